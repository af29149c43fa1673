package storedav

import (
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
)

// Namespaces used by every kind.
const (
	NSDAV     = "DAV:"
	NSCardDAV = "urn:ietf:params:xml:ns:carddav"
	NSCalDAV  = "urn:ietf:params:xml:ns:caldav"
	NSCS      = "http://calendarserver.org/ns/"
	NSICal    = "http://apple.com/ns/ical/"
)

// Kind describes what a service keeps, so that one Handler serves address books and
// calendars alike.
type Kind struct {
	// Repo is the repository name below each owner: "contacts" or "calendar".
	Repo string
	// NS is the service's XML namespace (NSCardDAV or NSCalDAV).
	NS string
	// CollectionType is the local name (in NS) of the collection's resource type:
	// "addressbook" or "calendar".
	CollectionType string
	// HomeSet is the local name (in NS) of the principal's home-set property:
	// "addressbook-home-set" or "calendar-home-set".
	HomeSet string
	// Description is the local name (in NS) of the description property:
	// "addressbook-description" or "calendar-description".
	Description string
	// DataProp is the local name (in NS) of the object data property:
	// "address-data" or "calendar-data".
	DataProp string
	// ValidData is the local name (in NS) of the precondition a malformed object fails:
	// "valid-address-data" or "valid-calendar-data".
	ValidData string
	// SupportedData is the local name (in NS) of the supported data property:
	// "supported-address-data" or "supported-calendar-data".
	SupportedData string
	// ContentType is what GET answers for an object: "text/vcard; charset=utf-8".
	ContentType string
	// MediaType and Version describe the one supported data type
	// ("text/vcard" "3.0", "text/calendar" "2.0").
	MediaType, Version string
	// Ext is the suffix given to resource names made by import: ".vcf", ".ics".
	Ext string
	// Compliance is the token added to the DAV header: "addressbook" or "calendar-access".
	Compliance string
	// MkcolMethod is an extra method that creates a collection ("MKCALENDAR"), or "".
	MkcolMethod string
	// Reports lists the REPORTs (local names in NS) advertised in supported-report-set
	// besides sync-collection: {"addressbook-multiget", "addressbook-query"}.
	Reports []string
	// Components, when set, makes collections carry a component set (calendars):
	// supported-calendar-component-set is answered from Meta.Components, defaulting to
	// DefaultComponents, and CheckComponents vets a set given at creation.
	Components        bool
	DefaultComponents []string
	CheckComponents   func(comps []string) error
	// Validate checks an object's bytes before anything is stored and returns its UID
	// (and for calendars the component it holds, checked against the collection's set).
	// A malformed object must return a *PreconditionError (normally with Name ValidData
	// and Status 400 or 403) or any other error (answered 400 with its text).
	Validate func(data []byte) (Object, error)
	// Multiget is the local name (in NS) of the multiget REPORT that Handler answers
	// itself with the stored bytes ("addressbook-multiget"); "" leaves it to Next. A
	// request asking for parts of the data (a data element with children) goes to Next.
	Multiget string
	// Query is the local name (in NS) of the query REPORT Handler answers itself with
	// Match and the stored bytes ("addressbook-query"); "" (or a nil Match) leaves it to
	// Next.
	Query string
	// Match compiles a query's filter element (nil when the query has none) into a
	// predicate on objects. A *PreconditionError (such as an unsupported collation) is
	// answered as such, another error with 400.
	Match func(filter *Element) (func(o StoredObject) (bool, error), error)
	// CollectionProp answers extra collection properties (besides the generic ones)
	// as inner XML; ok false means not handled. May be nil.
	CollectionProp func(name xml.Name, m Meta) (inner string, ok bool)
}

// Object is what Kind.Validate learned about an object.
type Object struct {
	UID       string // the UID every object must have
	Component string // "VEVENT", "VTODO", "VJOURNAL" for calendars; "" otherwise
}

// Check reports whether k is complete enough to serve.
func (k *Kind) Check() error {
	switch {
	case k.Repo == "" || k.NS == "" || k.CollectionType == "" || k.HomeSet == "":
		return errors.New("storedav: kind needs Repo, NS, CollectionType and HomeSet")
	case k.Validate == nil:
		return errors.New("storedav: kind needs a Validate function")
	case k.ContentType == "" || k.DataProp == "" || k.ValidData == "":
		return errors.New("storedav: kind needs ContentType, DataProp and ValidData")
	}
	return nil
}

// PreconditionError is a failed WebDAV precondition or postcondition (RFC 4918 §16):
// answered with Status and an error body naming the condition, plus a human reason.
type PreconditionError struct {
	Status int      // HTTP status: 400, 403, 409, 412, 413 ...
	Name   xml.Name // the condition element, e.g. {urn:ietf:params:xml:ns:carddav}valid-address-data
	Reason string   // why, for people
	Href   string   // for no-uid-conflict: the resource already holding the UID
}

// Error says which condition failed and why.
func (e *PreconditionError) Error() string {
	return fmt.Sprintf("storedav: %s: %s", e.Name.Local, e.Reason)
}

// Errors of Collections; test them with errors.Is (store.ErrNotFound is used for what
// does not exist).
var (
	// ErrExists: the collection exists already (MKCOL answers 405).
	ErrExists = errors.New("storedav: collection exists")
	// ErrPrecondition: If-Match or If-None-Match did not hold (412).
	ErrPrecondition = errors.New("storedav: precondition failed")
	// ErrForbidden: the user may not do this (403).
	ErrForbidden = errors.New("storedav: forbidden")
	// ErrInvalid: a malformed name, path or request (400).
	ErrInvalid = errors.New("storedav: invalid")
	// ErrLimit: a count limit would be exceeded (507 for collections, 403 otherwise).
	ErrLimit = errors.New("storedav: limit reached")
)

// httpStatus maps an error of this package to a status.
func validDataError(k *Kind, status int, reason string) *PreconditionError {
	if status == 0 {
		status = http.StatusForbidden
	}
	return &PreconditionError{Status: status, Name: xml.Name{Space: k.NS, Local: k.ValidData}, Reason: reason}
}

// InvalidData returns the precondition error a Validate function reports for malformed
// data: the kind's ValidData condition, status 403 (RFC 6352 §6.3.2.1, RFC 4791 §5.3.2.1).
func (k *Kind) InvalidData(reason string) *PreconditionError {
	return validDataError(k, http.StatusForbidden, reason)
}
