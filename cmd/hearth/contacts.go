package main

// contactsCommands are the "hearth contacts ..." commands (import, export, restore).
func contactsCommands() []command { return nil }
