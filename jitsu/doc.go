// Package jitsu is Hearth's DNS server that summons appliances when their names are looked up.
package jitsu
