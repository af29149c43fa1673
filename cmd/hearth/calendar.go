package main

// calendarCommands are the "hearth calendar ..." commands (import, export, restore).
func calendarCommands() []command { return nil }
