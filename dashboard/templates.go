package dashboard

import (
	"html/template"
	"strings"
)

func parseTemplates() (*template.Template, error) {
	funcs := template.FuncMap{
		"lower": strings.ToLower,
		"join":  strings.Join,
	}
	return template.New("").Funcs(funcs).Parse(templates)
}

// templates are every page. Each page template gets a page; .Content is its own data.
const templates = `
{{define "head"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} · Hearth</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#222;background:#fafaf7}
header{background:#3b2f2f;color:#fff;padding:.5em 1em;display:flex;gap:1em;align-items:center;flex-wrap:wrap}
header a{color:#fff;text-decoration:none}header a.on{text-decoration:underline}
header form{margin-left:auto}
main{padding:1em;max-width:70em}
table{border-collapse:collapse;margin:.5em 0}td,th{border-bottom:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
.flash{background:#e6f4e6;padding:.5em;border:1px solid #9c9}.error{background:#fbe9e9;padding:.5em;border:1px solid #d99}
.secret{font-family:monospace;background:#fff8d6;padding:.5em;border:1px solid #cb6;word-break:break-all}
pre.diff{background:#fff;border:1px solid #ddd;padding:.4em;overflow:auto;max-height:30em}
.add{background:#e6ffe6}.del{background:#ffe6e6}
.running{color:#070;font-weight:bold}.stopped{color:#666}.backoff{color:#b00}
form.inline{display:inline}
button{cursor:pointer}
</style></head><body>
<header><strong>Hearth</strong>
{{if .User}}
<a href="/appliances" {{if eq .Nav "appliances"}}class="on"{{end}}>Appliances</a>
<a href="/data" {{if or (eq .Nav "data") (eq .Nav "history") (eq .Nav "commit")}}class="on"{{end}}>Data &amp; history</a>
{{if .Admin}}<a href="/users" {{if eq .Nav "users"}}class="on"{{end}}>Users</a>{{end}}
<a href="/account" {{if eq .Nav "account"}}class="on"{{end}}>Account</a>
<a href="/setup" {{if eq .Nav "setup"}}class="on"{{end}}>Setup</a>
<form method="post" action="/logout"><input type="hidden" name="csrf" value="{{.CSRF}}">{{.User}} <button type="submit">Log out</button></form>
{{end}}
</header><main>
{{if .Flash}}<p class="flash" role="status">{{.Flash}}</p>{{end}}
<h1>{{.Title}}</h1>
{{end}}

{{define "foot"}}</main></body></html>{{end}}

{{define "error"}}{{template "head" .}}<p class="error" role="alert">{{.Content}}</p>
<p><a href="/">Back to the dashboard</a></p>{{template "foot" .}}{{end}}

{{define "login"}}{{template "head" .}}{{with .Content}}
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
<form method="post" action="/login">
<input type="hidden" name="csrf" value="{{.Token}}">
<p><label>User <input name="user" id="user" value="{{.Name}}" autocomplete="username" required autofocus></label></p>
<p><label>Password <input type="password" name="password" id="password" autocomplete="current-password" required></label></p>
<p><button type="submit" id="login">Log in</button></p>
</form>{{end}}{{template "foot" .}}{{end}}

{{define "appliances"}}{{template "head" .}}{{$csrf := .CSRF}}{{with .Content}}
{{if not .Configured}}<p>Jitsu's status address is not configured (-jitsu-status).</p>{{end}}
{{if .Error}}<p class="error" role="alert">Jitsu did not answer: {{.Error}}</p>{{end}}
{{if .Rows}}
<table id="appliances"><thead><tr><th>Appliance</th><th>State</th><th>Since</th><th>Summons</th><th>Last summon</th><th>Memory</th><th>Connections</th><th>Restarts</th>{{if .CanStop}}<th></th>{{end}}</tr></thead><tbody>
{{range .Rows}}<tr id="app-{{.Name}}"><td>{{.Name}}</td><td class="{{.State}}">{{.State}}</td><td>{{.SinceAgo}}</td><td>{{.Summons}}</td><td>{{.Latency}}</td><td>{{.Memory}}</td><td>{{.Conns}}</td><td>{{.Restarts}}{{if .LastExit}} ({{.LastExit}}){{end}}</td>
{{if $.Content.CanStop}}<td>{{if .Running}}<form class="inline" method="post" action="/appliances/{{.Name}}/stop"><input type="hidden" name="csrf" value="{{$csrf}}"><button type="submit">Stop</button></form>{{end}}</td>{{end}}</tr>
{{end}}</tbody></table>
{{end}}{{end}}{{template "foot" .}}{{end}}

{{define "data"}}{{template "head" .}}{{with .Content}}
{{range .Services}}<h2>{{.Service.Title}}</h2>
{{if .Error}}<p class="error">{{.Error}}</p>{{end}}
{{$svc := .Service.Name}}{{if .Sets}}<ul>{{range .Sets}}<li><a href="/history/{{$svc}}/{{.ID}}">{{.Name}}</a></li>{{end}}</ul>{{else}}<p>None yet.</p>{{end}}
{{if .Deleted}}<p>Deleted recently:</p><ul>{{range .Deleted}}<li><a href="/history/{{$svc}}/{{.ID}}">{{.Name}}</a> (deleted)</li>{{end}}</ul>{{end}}
{{end}}{{end}}{{template "foot" .}}{{end}}

{{define "history"}}{{template "head" .}}{{$csrf := .CSRF}}{{with .Content}}{{$svc := .Service}}{{$set := .Set.ID}}
<p>{{$svc.Title}} › {{.Set.Name}}: the commits that changed it, newest first.</p>
{{if .Entries}}<table id="history"><thead><tr><th>When</th><th>Who</th><th>What</th><th>Changes</th><th></th></tr></thead><tbody>
{{range .Entries}}<tr><td>{{.Time}}</td><td>{{.Author}}</td><td>{{.Message}}</td>
<td>{{if .Added}}+{{.Added}} {{end}}{{if .Changed}}~{{.Changed}} {{end}}{{if .Deleted}}−{{.Deleted}}{{end}}
<ul>{{$id := .ID}}{{range .Items}}<li>{{.Kind}} {{.Name}}{{if .Restorable}}
<form class="inline" method="post" action="/restore"><input type="hidden" name="csrf" value="{{$csrf}}"><input type="hidden" name="service" value="{{$svc.Name}}"><input type="hidden" name="set" value="{{$set}}"><input type="hidden" name="commit" value="{{$id}}"><input type="hidden" name="key" value="{{.Key}}"><button type="submit" class="restore">Restore</button></form>{{end}}</li>{{end}}
{{if .More}}<li>and {{.More}} more</li>{{end}}</ul></td>
<td><a href="/history/{{$svc.Name}}/{{$set}}/{{.ID}}">diff {{.Short}}</a></td></tr>
{{end}}</tbody></table>{{else}}<p>No changes{{if .Scanned}} in the {{.Scanned}} commits looked at{{end}}.</p>{{end}}
{{if .Older}}<p><a id="older" href="/history/{{$svc.Name}}/{{$set}}?from={{.Older}}{{if .Skip}}&amp;skip=1{{end}}">Older changes</a></p>{{end}}
{{end}}{{template "foot" .}}{{end}}

{{define "commit"}}{{template "head" .}}{{$csrf := .CSRF}}{{with .Content}}{{$svc := .Service}}{{$set := .Set.ID}}{{$id := .Entry.ID}}
<p><a href="/history/{{$svc.Name}}/{{$set}}">{{.Set.Name}}</a> · {{.Entry.Time}} · {{.Entry.Author}} · {{.Entry.Message}} · <code>{{.Entry.ID}}</code></p>
{{range .Items}}<h3>{{.Kind}}: {{.Name}}</h3>{{if .Key}}<p><code>{{.Key}}</code></p>{{end}}
{{if .Restorable}}<form method="post" action="/restore"><input type="hidden" name="csrf" value="{{$csrf}}"><input type="hidden" name="service" value="{{$svc.Name}}"><input type="hidden" name="set" value="{{$set}}"><input type="hidden" name="commit" value="{{$id}}"><input type="hidden" name="key" value="{{.Key}}"><button type="submit" class="restore">Restore this {{$svc.Item}}</button></form>{{end}}
{{if .Note}}<p>{{.Note}}</p>{{end}}
{{if .Lines}}<pre class="diff">{{range .Lines}}{{if eq .Op "+"}}<span class="add">+{{.Text}}</span>{{else if eq .Op "-"}}<span class="del">-{{.Text}}</span>{{else}} {{.Text}}{{end}}
{{end}}</pre>{{end}}
{{end}}{{if .More}}<p>and {{.More}} more items.</p>{{end}}
{{end}}{{template "foot" .}}{{end}}

{{define "users"}}{{template "head" .}}{{$csrf := .CSRF}}{{with .Content}}
{{if .Secret}}<p>{{.SecretLabel}}</p><p class="secret" id="secret">{{.Secret}}</p>{{end}}
<table id="users"><thead><tr><th>User</th><th>Created</th><th>State</th><th>App passwords</th><th>Password</th></tr></thead><tbody>
{{range .Users}}{{$name := .Name}}<tr id="user-{{.Name}}"><td>{{.Name}}</td><td>{{.Created.Format "2006-01-02"}}</td>
<td>{{if .Disabled}}disabled <form class="inline" method="post" action="/users/{{.Name}}/enable"><input type="hidden" name="csrf" value="{{$csrf}}"><button type="submit">Enable</button></form>{{else}}active <form class="inline" method="post" action="/users/{{.Name}}/disable"><input type="hidden" name="csrf" value="{{$csrf}}"><button type="submit">Disable</button></form>{{end}}</td>
<td><ul>{{range .AppPasswords}}<li>{{.Label}} ({{.Created.Format "2006-01-02"}}) <form class="inline" method="post" action="/users/{{$name}}/app-passwords/revoke"><input type="hidden" name="csrf" value="{{$csrf}}"><input type="hidden" name="label" value="{{.Label}}"><button type="submit">Revoke</button></form></li>{{end}}</ul>
<form method="post" action="/users/{{.Name}}/app-passwords"><input type="hidden" name="csrf" value="{{$csrf}}"><input name="label" placeholder="device, e.g. phone" required maxlength="64"> <button type="submit">New app password</button></form></td>
<td><form method="post" action="/users/{{.Name}}/password"><input type="hidden" name="csrf" value="{{$csrf}}"><input type="password" name="password" placeholder="new password" required minlength="8" autocomplete="new-password"> <button type="submit">Set</button></form></td></tr>
{{end}}</tbody></table>
<h2>Add a user</h2>
<form method="post" action="/users"><input type="hidden" name="csrf" value="{{$csrf}}">
<label>Name <input name="name" required maxlength="64"></label> <label>Password <input type="password" name="password" required minlength="8" autocomplete="new-password"></label> <button type="submit">Add</button></form>
<h2>Invitations</h2>
<p>An invitation is a link with which someone picks their own user name and password. It works once and for 7 days.</p>
<form method="post" action="/invitations"><input type="hidden" name="csrf" value="{{$csrf}}"><label>Note <input name="note" maxlength="200" placeholder="for whom"></label> <button type="submit">New invitation link</button></form>
{{if .Invitations}}<table><thead><tr><th>Invitation</th><th>Note</th><th>By</th><th>Expires</th><th></th></tr></thead><tbody>
{{range .Invitations}}<tr><td>{{.Short}}…</td><td>{{.Note}}</td><td>{{.By}}</td><td>{{.Expires}}</td><td><form class="inline" method="post" action="/invitations/revoke"><input type="hidden" name="csrf" value="{{$csrf}}"><input type="hidden" name="id" value="{{.ID}}"><button type="submit">Revoke</button></form></td></tr>{{end}}
</tbody></table>{{end}}
{{end}}{{template "foot" .}}{{end}}

{{define "account"}}{{template "head" .}}{{$csrf := .CSRF}}{{with .Content}}
{{if .Secret}}<p>{{.SecretLabel}}</p><p class="secret" id="secret">{{.Secret}}</p>{{end}}
<h2>App passwords</h2>
<p>Give each device its own app password: it works wherever your password does, and revoking it leaves the others working.</p>
{{if .AppPasswords}}<ul>{{range .AppPasswords}}<li>{{.Label}} ({{.Created.Format "2006-01-02"}}) <form class="inline" method="post" action="/account/app-passwords/revoke"><input type="hidden" name="csrf" value="{{$csrf}}"><input type="hidden" name="label" value="{{.Label}}"><button type="submit">Revoke</button></form></li>{{end}}</ul>{{end}}
<form method="post" action="/account/app-passwords"><input type="hidden" name="csrf" value="{{$csrf}}"><input name="label" placeholder="device, e.g. phone" required maxlength="64"> <button type="submit">New app password</button></form>
<h2>Password</h2>
<form method="post" action="/account/password"><input type="hidden" name="csrf" value="{{$csrf}}">
<p><label>Current <input type="password" name="current" required autocomplete="current-password"></label></p>
<p><label>New <input type="password" name="password" required minlength="8" autocomplete="new-password"></label></p>
<p><label>Again <input type="password" name="password2" required minlength="8" autocomplete="new-password"></label></p>
<p><button type="submit">Change password</button></p></form>
{{end}}{{template "foot" .}}{{end}}

{{define "invite"}}{{template "head" .}}{{with .Content}}
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
<p>You were invited to this Hearth. Pick a user name and a password.</p>
<form method="post" action="/invite/{{.Token}}"><input type="hidden" name="csrf" value="{{.CSRF}}">
<p><label>User name <input name="name" value="{{.Name}}" required maxlength="64" autocomplete="username"></label></p>
<p><label>Password <input type="password" name="password" required minlength="8" autocomplete="new-password"></label></p>
<p><label>Again <input type="password" name="password2" required minlength="8" autocomplete="new-password"></label></p>
<p><button type="submit">Create my account</button></p></form>
{{end}}{{template "foot" .}}{{end}}

{{define "setup"}}{{template "head" .}}{{with .Content}}
<h2>1. Trust Hearth's certificates</h2>
{{if .HasCA}}<p><a href="/ca.pem" download="hearth-ca.crt">Download the Hearth CA certificate</a> and import it on each device:</p>{{end}}
<ul>
<li><b>Thunderbird</b>: Settings → Privacy &amp; Security → Certificates → Manage Certificates → Authorities → Import, tick "Trust this CA to identify websites".</li>
<li><b>macOS</b>: open the file (Keychain Access), double-click the certificate, Trust → "Always Trust". <b>iOS/iPadOS</b>: open it on the device, install the profile in Settings → General → VPN &amp; Device Management, then enable it under General → About → Certificate Trust Settings.</li>
<li><b>Android / DAVx5</b>: Settings → Security → Encryption &amp; credentials → Install a certificate → CA certificate.</li>
<li><b>Debian/Ubuntu</b>: copy it to /usr/local/share/ca-certificates/hearth.crt and run update-ca-certificates.</li>
</ul>
<h2>2. Servers</h2>
<table><thead><tr><th>Service</th><th>Host</th><th>Port</th><th>Security</th></tr></thead><tbody>
{{range .Endpoints}}<tr><td>{{.Service}}</td><td>{{.Host}}</td><td>{{.Port}}</td><td>{{.TLS}}</td></tr>{{end}}
</tbody></table>
<p>Your user name is <b>{{.User}}</b>. Use an app password per device: make them on your <a href="/account">account</a> page.</p>
<h2>3. Clients</h2>
<h3>Thunderbird</h3>
<p>Add a mail account with manual configuration: incoming IMAP {{.Mail}} port {{.MailIMAPS}}, SSL/TLS, normal password; outgoing SMTP {{.Mail}} {{if .MailSubmitTLS}}port {{.MailSubmitTLS}}, SSL/TLS{{else}}port {{.MailSubmit}}, STARTTLS{{end}}, normal password; user name {{.User}}.{{if .MailSubmitTLS}} (Port {{.MailSubmit}} with STARTTLS works too.){{end}}
Address book: New CardDAV address book, URL {{.Contacts}}. Calendar: New calendar → On the network, location {{.Calendar}}.</p>
<h3>Apple Mail, Contacts, Calendar</h3>
<p id="apple-profile"><a href="{{.Profile}}" download>Download the configuration profile</a> for iPhone, iPad and Mac: it installs {{if .HasCA}}Hearth's certificate and {{end}}your mail, contacts and calendar accounts in one go (open it, then Settings → General → VPN &amp; Device Management → install{{if .HasCA}}; on iOS then enable the certificate under General → About → Certificate Trust Settings{{end}}). The device asks for your password (use an app password) when you install it.</p>
<form method="post" action="{{.Profile}}"><input type="hidden" name="csrf" value="{{$.CSRF}}"><button type="submit" id="apple-profile-password">Download it with a new app password for this device</button> (the file then holds that password: keep it safe, delete it once installed, and revoke the password on your <a href="/account">account</a> page if the file is lost)</form>
<p>Or by hand: Settings → Mail → Accounts → Add Account → Other: Mail account (IMAP host {{.Mail}} port {{.MailIMAPS}} with SSL, SMTP {{.Mail}} port {{.MailSubmit}}); Add CardDAV Account with server {{.Contacts}}; Add CalDAV Account with server {{.Calendar}}.</p>
<h3>DAVx5 (Android)</h3>
<p>Add account → Login with URL and user name: base URL {{.Contacts}} for contacts and {{.Calendar}} for calendars (or just https://{{.Domain}} if your DNS points at Hearth: DAVx5 finds the rest through the SRV records below).</p>
<h3>khal / vdirsyncer</h3>
<pre>[storage hearth_contacts]
type = "carddav"
url = "{{.Contacts}}"
username = "{{.User}}"
password.fetch = ["command", "cat", "~/.hearth-app-password"]
verify = "~/hearth-ca.crt"

[storage hearth_calendar]
type = "caldav"
url = "{{.Calendar}}"
username = "{{.User}}"
password.fetch = ["command", "cat", "~/.hearth-app-password"]
verify = "~/hearth-ca.crt"</pre>
<h3>mbsync (isync)</h3>
<pre>IMAPAccount hearth
Host {{.Mail}}
Port {{.MailIMAPS}}
User {{.User}}
PassCmd "cat ~/.hearth-app-password"
SSLType IMAPS
CertificateFile ~/hearth-ca.crt

IMAPStore hearth-remote
Account hearth</pre>
<h2>4. Autodiscovery</h2>
<p>When your router or tailnet sends names below {{.Domain}} to Hearth's DNS (jitsu), clients find the servers by these records:</p>
<table><thead><tr><th>Record</th><th>Points at</th></tr></thead><tbody>
{{range .SRV}}<tr><td>{{.Name}} SRV</td><td>{{.Target}}</td></tr>{{end}}
</tbody></table>
<p>The dashboard itself: {{.Dashboard}}</p>
{{end}}{{template "foot" .}}{{end}}
`
