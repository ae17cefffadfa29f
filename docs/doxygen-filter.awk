# Doxygen filter for crowdloss's headers (FILTER_PATTERNS in docs/Doxyfile.in). The headers write
# code examples and formulas as runs of `///` lines indented by three or more spaces, after a line
# ending in "Example:" or after an empty `///` line. Markdown would fold such a run into the
# paragraph, so this filter opens a \code{.cpp} block (after "Example:") or a <pre> block (after
# an empty line) at the end of the line before the run and closes it at the end of the run's last
# line. No line is added or removed, so doxygen's warnings point at the right lines.

function flush(closing) {
  if (!has_pending) return
  if (closing) pending = pending (kind == "code" ? " \\endcode" : " </pre>")
  print pending
  has_pending = 0
}

{
  is_comment = match($0, /^[ \t]*\/\/\//)
  text = is_comment ? substr($0, RSTART + RLENGTH) : ""
  indented = is_comment && text ~ /^   +[^ ]/
  if (kind != "") {
    if (indented) {  # the run goes on
      flush(0)
    } else {         # the run ended on the pending line
      flush(1)
      kind = ""
    }
  }
  if (kind == "" && indented && (prev_blank || prev_example)) {
    kind = prev_example ? "code" : "pre"
    pending = pending (kind == "code" ? " \\code{.cpp}" : " <pre>")
  }
  flush(0)
  pending = $0
  has_pending = 1
  prev_blank = is_comment && text ~ /^[ \t]*$/
  prev_example = is_comment && text ~ /Example:[ \t]*$/
}

END {
  flush(kind != "")
}
