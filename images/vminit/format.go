//go:build linux

package main

import "github.com/hearth-home/hearth/images/internal/permfmt"

// formatPerm formats the data disk when it is empty (all zeros at its start), never when it
// holds anything.
func formatPerm(dev string) error { return permfmt.FormatIfEmpty(dev) }
