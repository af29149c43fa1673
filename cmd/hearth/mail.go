package main

// mailCommands are the "hearth mail ..." commands (import, export, restore).
func mailCommands() []command { return nil }
