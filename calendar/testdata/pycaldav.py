#!/usr/bin/python3
"""Drive a CalDAV server with python-caldav: discover, create a calendar, save events and
todos (one recurring), search a time range with expansion, delete. Prints findings as
KEY VALUE lines for the Go test to check; exits non-zero on failure."""
import sys
from datetime import datetime, timezone

import caldav

url, user, password = sys.argv[1:4]
client = caldav.DAVClient(url=url, username=user, password=password)
principal = client.principal()
print("principal", principal.url.path)
cal = principal.make_calendar(name="Python", cal_id="py")
print("calendar", cal.url.path)
print("calendars", ",".join(sorted(c.url.path for c in principal.calendars())))

cal.save_event("""BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//py//EN
BEGIN:VEVENT
UID:py-weekly
DTSTAMP:20250101T000000Z
DTSTART:20250303T090000Z
DTEND:20250303T100000Z
RRULE:FREQ=DAILY;COUNT=10
SUMMARY:Daily review
END:VEVENT
END:VCALENDAR
""")
cal.save_event("""BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//py//EN
BEGIN:VEVENT
UID:py-once
DTSTAMP:20250101T000000Z
DTSTART:20250305T150000Z
DTEND:20250305T160000Z
SUMMARY:Dentist
END:VEVENT
END:VCALENDAR
""")
cal.save_event("""BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//py//EN
BEGIN:VEVENT
UID:py-later
DTSTAMP:20250101T000000Z
DTSTART:20250601T150000Z
DTEND:20250601T160000Z
SUMMARY:Summer
END:VEVENT
END:VCALENDAR
""")
cal.save_todo("""BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//py//EN
BEGIN:VTODO
UID:py-todo
DTSTAMP:20250101T000000Z
DUE:20250306T120000Z
SUMMARY:Call plumber
END:VTODO
END:VCALENDAR
""")

start = datetime(2025, 3, 4, tzinfo=timezone.utc)
end = datetime(2025, 3, 6, tzinfo=timezone.utc)
found = cal.date_search(start=start, end=end, expand=True)
instances = []
for obj in found:
    for comp in obj.icalendar_instance.walk("VEVENT"):
        rid = comp.get("RECURRENCE-ID")
        instances.append("%s@%s" % (comp.get("SUMMARY"), rid.dt.strftime("%Y%m%dT%H%M%SZ") if rid else "-"))
print("expanded", ",".join(sorted(instances)))

todos = cal.search(todo=True, start=start, end=datetime(2025, 3, 7, tzinfo=timezone.utc))
print("todos", ",".join(sorted(str(t.icalendar_instance.walk("VTODO")[0].get("SUMMARY")) for t in todos)))

ev = cal.event_by_uid("py-once")
ev.delete()
left = sorted(str(e.icalendar_instance.walk("VEVENT")[0].get("UID")) for e in cal.events())
print("after-delete", ",".join(left))
print("ok")
