package calendar

import (
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/emersion/go-ical"
	"github.com/hearth-home/hearth/store/storedav"
)

// Repo is the repository name below each user that holds their calendars.
const Repo = "calendar"

// Kind describes calendars to storedav: the CalDAV names, the content type and the
// validation of objects.
func Kind() *storedav.Kind {
	return &storedav.Kind{
		Repo:              Repo,
		NS:                storedav.NSCalDAV,
		CollectionType:    "calendar",
		HomeSet:           "calendar-home-set",
		Description:       "calendar-description",
		DataProp:          "calendar-data",
		ValidData:         PreValidData,
		SupportedData:     "supported-calendar-data",
		ContentType:       "text/calendar; charset=utf-8",
		MediaType:         "text/calendar",
		Version:           "2.0",
		Ext:               ".ics",
		Compliance:        "calendar-access",
		MkcolMethod:       "MKCALENDAR",
		Reports:           []string{"calendar-multiget", "calendar-query", "free-busy-query"},
		Components:        true,
		DefaultComponents: []string{ical.CompEvent, ical.CompToDo, ical.CompJournal},
		CheckComponents:   CheckComponents,
		Validate:          validateForStore,
		CollectionProp:    collectionProp,
	}
}

// CheckComponents vets a calendar's supported component set.
func CheckComponents(comps []string) error {
	if len(comps) > len(allComponents) {
		return fmt.Errorf("calendar: %d components: %w", len(comps), storedav.ErrInvalid)
	}
	for _, c := range comps {
		if !slices.Contains(allComponents, c) {
			return &storedav.PreconditionError{Status: http.StatusForbidden,
				Name:   xml.Name{Space: storedav.NSCalDAV, Local: "supported-calendar-component"},
				Reason: fmt.Sprintf("component %q cannot be stored (only %v)", c, allComponents)}
		}
	}
	return nil
}

// validateForStore is Kind's Validate: the component set is checked by storedav against
// the collection, so all components are accepted here.
func validateForStore(data []byte) (storedav.Object, error) {
	obj, err := Validate(data, ValidateOptions{MaxSize: 1 << 30})
	if err != nil {
		var ve *ValidationError
		if errors.As(err, &ve) {
			return storedav.Object{}, &storedav.PreconditionError{Status: ve.Status,
				Name: xml.Name{Space: storedav.NSCalDAV, Local: ve.Precondition}, Reason: ve.Reason}
		}
		return storedav.Object{}, err
	}
	return storedav.Object{UID: obj.UID, Component: obj.Kind}, nil
}

// collectionProp answers the calendar-only collection properties.
func collectionProp(name xml.Name, m storedav.Meta) (string, bool) {
	if name.Space != storedav.NSCalDAV {
		return "", false
	}
	switch name.Local {
	case "max-resource-size":
		return fmt.Sprint(DefaultMaxObjectSize), true
	case "supported-collation-set":
		return `<C:supported-collation xmlns:C="urn:ietf:params:xml:ns:caldav">i;ascii-casemap</C:supported-collation>` +
			`<C:supported-collation xmlns:C="urn:ietf:params:xml:ns:caldav">i;octet</C:supported-collation>`, true
	case "min-date-time":
		return "19000101T000000Z", true
	case "max-date-time":
		return "99991231T000000Z", true
	case "max-instances":
		return fmt.Sprint(MaxInstances), true
	}
	return "", false
}
