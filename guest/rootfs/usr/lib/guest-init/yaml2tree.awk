# yaml2tree.awk: turns a small YAML (or JSON) document into a directory tree, one file per scalar.
#
#   awk -v out=DIR -f yaml2tree.awk FILE
#
# A mapping becomes a directory with one entry per key (characters other than [A-Za-z0-9._-] in a
# key become "_"), a sequence a directory with entries 0, 1, 2..., and a scalar a file holding
# its value with no trailing newline (a block scalar keeps the newlines YAML gives it). So
# `users: [{name: a, ssh_authorized_keys: [k1]}]` gives the file DIR/users/0/ssh_authorized_keys/0
# holding "k1".
#
# The subset: block mappings and sequences (including "- key: value" items and sequences at
# their key's indentation), plain, single- and double-quoted scalars (also across lines), literal
# and folded block scalars with chomping indicators, flow collections ([..], {..}) across lines,
# whole JSON documents, comments, "---", tags and anchors (ignored). Not supported: aliases,
# merge keys, complex keys, multiple documents. Written for busybox awk (no gawk extensions).

BEGIN { n = 0; ND = 0; NLEAF = 0 }
{ sub(/\r$/, ""); L[++n] = $0 }
END {
    N = n; pos = 1
    skip_blank()
    if (pos <= N) {
        c = substr(content(L[pos]), 1, 1)
        if (c == "{" || c == "[") {
            s = ""
            for (i = pos; i <= N; i++) s = s L[i] "\n"
            flow_parse("", s)
        } else {
            parse_block("", indent_of(L[pos]))
        }
    }
    flush()
}

function indent_of(s,   i) {
    i = 0
    while (substr(s, i + 1, 1) == " ") i++
    return i
}
function content(s) { sub(/^[ \t]+/, "", s); return s }
function trim(s) { sub(/^[ \t\n]+/, "", s); sub(/[ \t\n]+$/, "", s); return s }
function spaces(k,   s) { s = ""; while (k-- > 0) s = s " "; return s }
function is_blank(s) { return s ~ /^[ \t]*$/ }
function is_comment(s) { return s ~ /^[ \t]*#/ }
function skip_blank() {
    while (pos <= N && (is_blank(L[pos]) || is_comment(L[pos]) || L[pos] ~ /^(---|\.\.\.)([ \t].*)?$/ || L[pos] ~ /^%/))
        pos++
}
function is_seq_item(c) { return c == "-" || substr(c, 1, 2) == "- " || substr(c, 1, 2) == "-\t" }
function sanitize(k) {
    gsub(/[^A-Za-z0-9._-]/, "_", k)
    if (k == "" || k == "." || k == "..") k = "_"
    return k
}

# Output.
function mkcoll(path) { if (path != "") D[++ND] = path }
function emit(path, v) {
    if (path == "") return
    NLEAF++; LP[NLEAF] = path; LV[NLEAF] = v
}
function flush(   cmd, i, f) {
    cmd = "mkdir -p '" out "'"
    for (i = 1; i <= ND; i++) cmd = cmd " '" out D[i] "'"
    system(cmd)
    for (i = 1; i <= NLEAF; i++) {
        f = out LP[i]
        printf "%s", LV[i] > f
        close(f)
    }
}

# split_key(c): is c a "key: value" line? Sets KEY and REST.
function split_key(c,   q, i, ch, k, p) {
    q = substr(c, 1, 1)
    if (q == "\"" || q == "'") {
        i = quoted_end(c, 1)
        if (i == 0) return 0
        k = unquote(substr(c, 1, i))
        c = substr(c, i + 1)
        sub(/^[ \t]*/, "", c)
        if (substr(c, 1, 1) != ":") return 0
        ch = substr(c, 2, 1)
        if (ch != "" && ch != " " && ch != "\t") return 0
        KEY = k; REST = trim(substr(c, 2))
        return 1
    }
    if (index("[]{}|>!&*%@`#,?", q) > 0) return 0
    p = index(c, ": ")
    i = index(c, ":\t")
    if (i > 0 && (p == 0 || i < p)) p = i
    if (p == 0 && substr(c, length(c), 1) == ":") p = length(c)
    if (p == 0) return 0
    k = substr(c, 1, p - 1)
    if (index(k, " #") > 0) return 0
    KEY = trim(k); REST = trim(substr(c, p + 1))
    return 1
}

# quoted_end(s, i): index of the quote closing the quoted scalar starting at s[i], or 0.
function quoted_end(s, i,   q, j, ch) {
    q = substr(s, i, 1)
    for (j = i + 1; j <= length(s); j++) {
        ch = substr(s, j, 1)
        if (q == "\"" && ch == "\\") { j++; continue }
        if (ch == q) {
            if (q == "'" && substr(s, j + 1, 1) == "'") { j++; continue }
            return j
        }
    }
    return 0
}

function hexval(h,   i, v, d) {
    v = 0; h = tolower(h)
    for (i = 1; i <= length(h); i++) {
        d = index("0123456789abcdef", substr(h, i, 1))
        if (d == 0) return -1
        v = v * 16 + d - 1
    }
    return v
}
function utf8(cp) {
    if (cp < 128) return sprintf("%c", cp)
    if (cp < 2048) return sprintf("%c%c", 192 + int(cp / 64), 128 + cp % 64)
    return sprintf("%c%c%c", 224 + int(cp / 4096), 128 + int(cp / 64) % 64, 128 + cp % 64)
}

# unquote(s): s is a whole quoted scalar with its quotes.
function unquote(s,   q, body, out, i, ch, nx, cp) {
    q = substr(s, 1, 1)
    body = substr(s, 2, length(s) - 2)
    if (q == "'") { gsub(/''/, "'", body); return body }
    out = ""
    for (i = 1; i <= length(body); i++) {
        ch = substr(body, i, 1)
        if (ch != "\\") { out = out ch; continue }
        i++; nx = substr(body, i, 1)
        if (nx == "n") out = out "\n"
        else if (nx == "t") out = out "\t"
        else if (nx == "r") out = out "\r"
        else if (nx == "0") out = out sprintf("%c", 0)
        else if (nx == "e") out = out sprintf("%c", 27)
        else if (nx == "u" || nx == "x") {
            cp = hexval(substr(body, i + 1, nx == "u" ? 4 : 2))
            if (cp < 0) { out = out "\\" nx; continue }
            out = out utf8(cp); i += (nx == "u" ? 4 : 2)
        }
        else if (nx == "\n") { }
        else out = out nx
    }
    return out
}

# Block structure.
function parse_block(path, ind,   c) {
    skip_blank()
    if (pos > N) return
    c = content(L[pos])
    if (is_seq_item(c)) parse_seq(path, ind)
    else if (split_key(c)) parse_map(path, ind)
    else { pos++; parse_value(path, c, ind - 1) }
}

function parse_seq(path, ind,   i, c, rest, off) {
    mkcoll(path)
    i = 0
    while (1) {
        skip_blank()
        if (pos > N || indent_of(L[pos]) != ind) break
        c = content(L[pos])
        if (!is_seq_item(c)) break
        rest = substr(c, 2)
        off = 0
        while (substr(rest, off + 1, 1) == " " || substr(rest, off + 1, 1) == "\t") off++
        rest = substr(rest, off + 1)
        if (rest == "" || rest ~ /^#/) {
            pos++
            skip_blank()
            if (pos <= N && indent_of(L[pos]) > ind) parse_block(path "/" i, indent_of(L[pos]))
            else emit(path "/" i, "")
        } else {
            # The item's content, at its own indentation, is parsed like a block of its own.
            L[pos] = spaces(ind + 1 + off) rest
            parse_block(path "/" i, ind + 1 + off)
        }
        i++
    }
}

function parse_map(path, ind,   c, kp, rest, ni) {
    mkcoll(path)
    while (1) {
        skip_blank()
        if (pos > N || indent_of(L[pos]) != ind) break
        c = content(L[pos])
        if (is_seq_item(c) || !split_key(c)) break
        kp = path "/" sanitize(KEY); rest = REST
        pos++
        while (rest ~ /^[!&][^ \t]*/) { sub(/^[!&][^ \t]*[ \t]*/, "", rest) }
        if (rest == "" || rest ~ /^#/) {
            skip_blank()
            if (pos <= N) {
                ni = indent_of(L[pos])
                if (ni > ind) { parse_block(kp, ni); continue }
                if (ni == ind && is_seq_item(content(L[pos]))) { parse_seq(kp, ind); continue }
            }
            emit(kp, "")
        } else {
            parse_value(kp, rest, ind)
        }
    }
}

# parse_value: v is the value text on the current line (already consumed); ind the parent's
# indentation: continuation lines must be indented more than that.
function parse_value(path, v, ind,   c, e, s) {
    while (v ~ /^[!&][^ \t]*/) { sub(/^[!&][^ \t]*[ \t]*/, "", v) }
    c = substr(v, 1, 1)
    if (c == "|" || c == ">") { block_scalar(path, v, ind); return }
    if (c == "[" || c == "{") {
        while (!flow_balanced(v) && pos <= N) { v = v "\n" L[pos]; pos++ }
        flow_parse(path, v)
        return
    }
    if (c == "\"" || c == "'") {
        s = v
        while ((e = quoted_end(s, 1)) == 0 && pos <= N) {
            if (is_blank(L[pos])) s = s "\n"
            else s = s (substr(s, length(s), 1) == "\n" ? "" : " ") trim(L[pos])
            pos++
        }
        if (e == 0) e = length(s)
        emit(path, unquote(substr(s, 1, e)))
        return
    }
    sub(/[ \t]+#.*$/, "", v)
    v = trim(v)
    while (pos <= N && !is_blank(L[pos]) && !is_comment(L[pos]) && indent_of(L[pos]) > ind) {
        v = v " " trim(L[pos]); pos++
    }
    emit(path, v)
}

function block_scalar(path, hdr, ind,   c, style, chomp, explicit, i, m, bi, line, nl, out, k, trail, prev_more) {
    style = substr(hdr, 1, 1)
    chomp = "clip"; explicit = 0
    for (i = 2; i <= length(hdr); i++) {
        c = substr(hdr, i, 1)
        if (c == "-") chomp = "strip"
        else if (c == "+") chomp = "keep"
        else if (c ~ /[1-9]/) explicit = c + 0
        else break
    }
    m = 0
    while (pos <= N && (is_blank(L[pos]) || indent_of(L[pos]) > ind)) { B[++m] = L[pos]; pos++ }
    bi = -1
    if (explicit > 0) bi = (ind < 0 ? 0 : ind) + explicit
    else for (i = 1; i <= m; i++) if (!is_blank(B[i])) { bi = indent_of(B[i]); break }
    # Trailing blank lines.
    trail = 0
    while (m > 0 && is_blank(B[m])) { m--; trail++ }
    out = ""; prev_more = 0
    for (i = 1; i <= m; i++) {
        line = B[i]
        if (is_blank(line)) line = ""
        else line = substr(line, bi + 1)
        if (i == 1) { out = line; prev_more = (substr(line, 1, 1) == " "); continue }
        if (style == "|") { out = out "\n" line; continue }
        # Folded: a line break between two plain lines becomes a space; empty lines and
        # more-indented lines keep their breaks.
        if (line == "" || substr(line, 1, 1) == " " || prev_more || substr(out, length(out), 1) == "\n") out = out "\n" line
        else out = out " " line
        prev_more = (substr(line, 1, 1) == " ")
    }
    if (style == ">") {
        # In folded style an empty line stands for one newline, not two.
        gsub(/\n\n/, "\n", out)
    }
    if (m > 0) {
        if (chomp == "clip") out = out "\n"
        else if (chomp == "keep") { out = out "\n"; for (k = 0; k < trail; k++) out = out "\n" }
    }
    emit(path, out)
}

# Flow collections (and whole JSON documents).
function flow_balanced(s,   i, ch, depth, q) {
    depth = 0; q = ""
    for (i = 1; i <= length(s); i++) {
        ch = substr(s, i, 1)
        if (q != "") {
            if (q == "\"" && ch == "\\") { i++; continue }
            if (ch == q) q = ""
            continue
        }
        if (ch == "\"" || ch == "'") q = ch
        else if (ch == "[" || ch == "{") depth++
        else if (ch == "]" || ch == "}") depth--
        else if (ch == "#" && (i == 1 || substr(s, i - 1, 1) ~ /[ \t\n]/)) {
            while (i <= length(s) && substr(s, i, 1) != "\n") i++
        }
    }
    return depth <= 0
}
function flow_parse(path, s) { FS_S = s; FP = 1; FL = length(s); flow_value(path) }
function fskip(   ch) {
    while (FP <= FL) {
        ch = substr(FS_S, FP, 1)
        if (ch == " " || ch == "\t" || ch == "\n" || ch == "\r") { FP++; continue }
        if (ch == "#") { while (FP <= FL && substr(FS_S, FP, 1) != "\n") FP++; continue }
        break
    }
}
function flow_value(path,   c, i, k) {
    fskip()
    c = substr(FS_S, FP, 1)
    if (c == "{") {
        FP++; mkcoll(path)
        while (FP <= FL) {
            fskip(); c = substr(FS_S, FP, 1)
            if (c == "}") { FP++; break }
            if (c == ",") { FP++; continue }
            k = flow_scalar(1)
            fskip()
            if (substr(FS_S, FP, 1) == ":") { FP++; flow_value(path "/" sanitize(k)) }
            else emit(path "/" sanitize(k), "")
        }
        return
    }
    if (c == "[") {
        FP++; mkcoll(path); i = 0
        while (FP <= FL) {
            fskip(); c = substr(FS_S, FP, 1)
            if (c == "]") { FP++; break }
            if (c == ",") { FP++; continue }
            flow_value(path "/" i); i++
        }
        return
    }
    emit(path, flow_scalar(0))
}
function flow_scalar(keymode,   c, e, start, nx) {
    fskip()
    c = substr(FS_S, FP, 1)
    if (c == "\"" || c == "'") {
        e = quoted_end(FS_S, FP)
        if (e == 0) e = FL
        start = FP; FP = e + 1
        return unquote(substr(FS_S, start, e - start + 1))
    }
    start = FP
    while (FP <= FL) {
        c = substr(FS_S, FP, 1)
        if (c == "," || c == "]" || c == "}") break
        if (c == "{" || c == "[") break
        if (c == ":") {
            nx = substr(FS_S, FP + 1, 1)
            if (nx == " " || nx == "\t" || nx == "\n" || nx == "," || nx == "]" || nx == "}" || nx == "" || (keymode && (nx == "\"" || nx == "'"))) break
        }
        FP++
    }
    return trim(substr(FS_S, start, FP - start))
}
