// Package jitsu is Hearth's DNS server that summons appliances, as processes or microVMs, when their names are looked up or their sockets connected to.
package jitsu
