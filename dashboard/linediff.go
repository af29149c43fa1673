package dashboard

import "strings"

// maxDiffCells bounds the LCS table of a line diff (old lines × new lines); larger
// changes are shown as all old lines removed and all new lines added.
const maxDiffCells = 4 << 20

// diffLine is one line of a line diff: Op is ' ', '-' or '+'.
type diffLine struct {
	Op   string
	Text string
}

// splitLines splits s into lines without their line ends ("" has none).
func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// lineDiff returns the lines of a and b as a diff: common lines (by longest common
// subsequence) kept, the others removed or added.
func lineDiff(a, b string) []diffLine {
	x, y := splitLines(a), splitLines(b)
	// Trim the common prefix and suffix first: most edits are small.
	pre := 0
	for pre < len(x) && pre < len(y) && x[pre] == y[pre] {
		pre++
	}
	suf := 0
	for suf < len(x)-pre && suf < len(y)-pre && x[len(x)-1-suf] == y[len(y)-1-suf] {
		suf++
	}
	out := make([]diffLine, 0, len(x)+len(y))
	for _, l := range x[:pre] {
		out = append(out, diffLine{" ", l})
	}
	mx, my := x[pre:len(x)-suf], y[pre:len(y)-suf]
	if len(mx)*len(my) > maxDiffCells {
		for _, l := range mx {
			out = append(out, diffLine{"-", l})
		}
		for _, l := range my {
			out = append(out, diffLine{"+", l})
		}
	} else {
		out = append(out, lcsDiff(mx, my)...)
	}
	for _, l := range x[len(x)-suf:] {
		out = append(out, diffLine{" ", l})
	}
	return out
}

// lcsDiff is the dynamic-programming diff of x and y.
func lcsDiff(x, y []string) []diffLine {
	n, m := len(x), len(y)
	// t[i][j] is the LCS length of x[i:] and y[j:], stored row-major.
	t := make([]int32, (n+1)*(m+1))
	at := func(i, j int) int32 { return t[i*(m+1)+j] }
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			v := max(at(i+1, j), at(i, j+1))
			if x[i] == y[j] {
				v = at(i+1, j+1) + 1
			}
			t[i*(m+1)+j] = v
		}
	}
	var out []diffLine
	i, j := 0, 0
	for i < n && j < m {
		switch {
		case x[i] == y[j]:
			out = append(out, diffLine{" ", x[i]})
			i++
			j++
		case at(i+1, j) >= at(i, j+1):
			out = append(out, diffLine{"-", x[i]})
			i++
		default:
			out = append(out, diffLine{"+", y[j]})
			j++
		}
	}
	for ; i < n; i++ {
		out = append(out, diffLine{"-", x[i]})
	}
	for ; j < m; j++ {
		out = append(out, diffLine{"+", y[j]})
	}
	return out
}
