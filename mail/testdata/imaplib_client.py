"""Drives Hearth's IMAP server with Python's imaplib (stdlib) and prints PASS or fails.

Usage: imaplib_client.py HOST PORT USER PASSWORD
"""
import imaplib
import socket
import sys

host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]


def check(cond, what):
    if not cond:
        print("FAIL:", what)
        sys.exit(1)


msg = (b"From: Py Thon <py@example.org>\r\nTo: you@example.org\r\nSubject: from python\r\n"
       b"Date: Mon, 02 Jan 2006 15:04:05 +0000\r\n\r\nhello from imaplib\r\n")

m = imaplib.IMAP4(host, port)
m.sock.settimeout(20)
typ, _ = m.login(user, password)
check(typ == "OK", "login")

typ, data = m.append("INBOX", r"(\Flagged)", None, msg)
check(typ == "OK" and b"APPENDUID" in data[0], "append %r" % data)
m.append("INBOX", None, None, msg.replace(b"from python", b"second"))

typ, data = m.select("INBOX")
check(typ == "OK" and int(data[0]) == 2, "select %r" % data)

typ, data = m.search(None, "SUBJECT", '"from python"')
check(typ == "OK" and data[0].split() == [b"1"], "search subject %r" % data)
typ, data = m.uid("SEARCH", "FLAGGED")
check(typ == "OK" and data[0].split() == [b"1"], "uid search flagged %r" % data)
typ, data = m.search(None, "FROM", "py@example.org")
check(data[0].split() == [b"1", b"2"], "search from %r" % data)

typ, data = m.fetch("1", "(RFC822 FLAGS)")
check(typ == "OK" and data[0][1] == msg, "fetch body %r" % (data,))
typ, data = m.fetch("1", "(FLAGS)")
check(b"\\Seen" in data[0] and b"\\Flagged" in data[0], "fetch set seen %r" % data)

typ, data = m.store("2", "+FLAGS", r"(\Answered $Python)")
check(typ == "OK" and b"$Python" in data[0], "store %r" % data)

typ, data = m.copy("1", "Archive")
check(typ == "OK", "copy %r" % data)
typ, data = m.uid("MOVE", "2", "Trash")
check(typ == "OK", "move %r" % data)
typ, data = m.status("Archive", "(MESSAGES)")
check(b"MESSAGES 1" in data[0], "status archive %r" % data)
typ, data = m.status("Trash", "(MESSAGES)")
check(b"MESSAGES 1" in data[0], "status trash %r" % data)

m.store("1", "+FLAGS", r"(\Deleted)")
typ, data = m.expunge()
check(typ == "OK" and data[-1] == b"1", "expunge %r" % data)  # data also holds the MOVE's EXPUNGE
typ, data = m.select("INBOX")
check(int(data[0]) == 0, "empty inbox %r" % data)

# IDLE by hand: imaplib in Python 3.11 has no idle().
tag = m._new_tag()
m.send(tag + b" IDLE\r\n")
line = m.readline()
check(line.startswith(b"+"), "idle continuation %r" % line)
print("IDLING", flush=True)
sys.stdin.readline()  # the test delivers a message, then tells us to look
line = m.readline()
check(b"EXISTS" in line, "idle exists %r" % line)
m.send(b"DONE\r\n")
while True:
    line = m.readline()
    if line.startswith(tag):
        check(b"OK" in line, "idle done %r" % line)
        break
m.logout()
print("PASS", flush=True)
