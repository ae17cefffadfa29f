# Doxygen filter for crowdloss's headers (FILTER_PATTERNS in docs/Doxyfile.in). The headers write
# formulas as runs of `///` lines indented by three or more spaces after an empty `///` line.
# Markdown would fold such a run into the paragraph, so this filter opens a <pre> block at the end
# of the line before the run and closes it at the end of the run's last line. Code examples are
# fenced (```cpp … ```), which doxygen's Markdown renders by itself; lines inside a fence are left
# alone. No line is added or removed, so doxygen's warnings point at the right lines.

function flush(closing) {
  if (!has_pending) return
  if (closing) pending = pending " </pre>"
  print pending
  has_pending = 0
}

{
  is_comment = match($0, /^[ \t]*\/\/\//)
  text = is_comment ? substr($0, RSTART + RLENGTH) : ""
  if (is_comment && text ~ /^ ?```/) fenced = !fenced
  indented = is_comment && !fenced && text ~ /^   +[^ ]/
  if (in_pre) {
    if (indented) {  # the run goes on
      flush(0)
    } else {         # the run ended on the pending line
      flush(1)
      in_pre = 0
    }
  }
  if (!in_pre && indented && prev_blank) {
    in_pre = 1
    pending = pending " <pre>"
  }
  flush(0)
  pending = $0
  has_pending = 1
  prev_blank = is_comment && text ~ /^[ \t]*$/
}

END {
  flush(in_pre)
}
