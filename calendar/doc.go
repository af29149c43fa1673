// Package calendar serves a user's calendars from the versioned store over CalDAV, with
// iCalendar validation, recurrence-aware time-range queries and free-busy reports.
//
// A user's calendars live in the store repository USER/calendar; a calendar is a key
// prefix (calendars/NAME/) holding one key per calendar object resource with the exact
// bytes the client sent. Time ranges follow RFC 4791 §9.9: recurring components are
// expanded (RRULE, RDATE, EXDATE, RECURRENCE-ID overrides), all-day and floating times are
// taken in the calendar's time zone (UTC unless the query says otherwise), and TZIDs are
// resolved as IANA names or from the object's VTIMEZONE. An override with
// RANGE=THISANDFUTURE describes its instance and every later one that has no override of
// its own: they take its properties and length, and move by its shift (its DTSTART minus
// its RECURRENCE-ID, in its zone's wall time, so a moved meeting keeps its local hour
// across a DST change; whole days for all-day instances); a later range takes over.
package calendar
