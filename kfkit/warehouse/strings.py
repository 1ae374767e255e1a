"""String functions DuckDB lacks or answers differently (string_functions): NORMALIZE and
NORMALIZE_AND_CASEFOLD (Unicode normalization forms), TO_CODE_POINTS and CODE_POINTS_TO_STRING, UNICODE
of an empty string (0, where DuckDB gives -1), STRING <-> BYTES casts as UTF-8 (DuckDB reads a
STRING's non-ASCII characters as an error and writes BYTES as \\x escapes), and SPLIT of BYTES (DuckDB's
str_split takes only VARCHAR), UPPER, LOWER and INITCAP beyond ASCII (Unicode's case mappings, where DuckDB's
own differ: UPPER('straße') was 'STRAẞE', LOWER('ΟΔΟΣ') 'οδοσ') and of BYTES (ASCII letters only)."""

from __future__ import annotations

import unicodedata

from sqlglot import exp

from kfkit.errors import QueryError

MACROS = [
    "CREATE OR REPLACE MACRO bq_unicode(s) AS CASE WHEN s = '' THEN 0 ELSE unicode(s) END",
    """CREATE OR REPLACE MACRO bq_to_code_points(x) AS CASE WHEN typeof(x) = 'BLOB'
         THEN bq_byte_values(TRY_CAST(x AS BLOB)) ELSE bq_code_points(TRY_CAST(x AS VARCHAR)) END""",
    """CREATE OR REPLACE MACRO bq_bytes(x) AS CASE WHEN typeof(x) = 'VARCHAR' THEN encode(TRY_CAST(x AS VARCHAR))
         ELSE TRY_CAST(x AS BLOB) END""",
]

_FORMS = ("NFC", "NFKC", "NFD", "NFKD")


# macros that raise: semantics gives each its name_rows twin (semantics.FAIL_MACRO)
RAISING_MACROS = [
    # UPPER/LOWER of a STRING: ASCII text (as many bytes as characters) stays on DuckDB's upper/lower, which map
    # ASCII letters as ICU does; any other text goes to Python's full case mapping (case_mapped)
    *[f"""CREATE OR REPLACE MACRO bq_{name}(x, what) AS CASE
         WHEN typeof(x) = 'BLOB' THEN error(what || ' of a BYTES value whose type the local warehouse could not tell '
              || 'when translating: CAST the value AS BYTES in the query, or run it on BigQuery')
         WHEN typeof(x) NOT IN ('VARCHAR', 'NULL') THEN error(what || ': No matching signature for {name.upper()}('
              || typeof(x) || '); it takes a STRING or BYTES')
         WHEN strlen(TRY_CAST(x AS VARCHAR)) = length(TRY_CAST(x AS VARCHAR)) THEN {name}(TRY_CAST(x AS VARCHAR))
         ELSE bq_{name}_unicode(TRY_CAST(x AS VARCHAR), what) END""" for name in ("upper", "lower")],

    # SPLIT whose value's type the translation could not tell, by its delimiter's: with a STRING one, ARRAY<STRING>
    # for a STRING (one DuckDB expression cannot also answer a BYTES value's ARRAY<BYTES>); with a BYTES one,
    # ARRAY<BYTES> for a BYTES value; any other pairing is an error naming SPLIT
    """CREATE OR REPLACE MACRO bq_split_text(x, d, what) AS CASE
         WHEN typeof(x) = 'BLOB' AND typeof(d) = 'VARCHAR' THEN error(what || ': No matching signature for '
              || 'SPLIT(BYTES, STRING); a BYTES value needs a BYTES delimiter (there is no default for BYTES)')
         WHEN typeof(x) = 'BLOB' THEN error(what || ' of a BYTES value whose type the local warehouse could not tell '
              || 'when translating: CAST the value AS BYTES in the query, or split it on BigQuery')
         WHEN typeof(x) NOT IN ('VARCHAR', 'NULL') OR typeof(d) NOT IN ('VARCHAR', 'NULL')
           THEN error(what || ': No matching signature for SPLIT(' || typeof(x) || ', ' || typeof(d)
                      || '); it takes (STRING, STRING) or (BYTES, BYTES)')
         ELSE str_split(TRY_CAST(x AS VARCHAR), TRY_CAST(d AS VARCHAR)) END""",
    """CREATE OR REPLACE MACRO bq_split_blob(x, d, what) AS CASE
         WHEN typeof(x) NOT IN ('BLOB', 'NULL') THEN error(what || ': No matching signature for SPLIT(' || typeof(x)
              || ', BYTES); it takes (STRING, STRING) or (BYTES, BYTES)')
         ELSE bq_split_bytes(TRY_CAST(x AS BLOB), d) END""",
]


def normalize(text, form, casefold):
    if text is None:
        return None
    text = unicodedata.normalize(form, text)
    return unicodedata.normalize(form, text.casefold()) if casefold else text


def code_points(text):
    return None if text is None else [ord(ch) for ch in text]


def byte_values(data):
    return None if data is None else list(bytes(data))


def code_points_to_string(points):
    """CODE_POINTS_TO_STRING: NULL if the array or any element is NULL; an error for a value that is no
    Unicode scalar value."""
    if points is None or any(p is None for p in points):
        return None
    for point in points:
        if not (0 <= point <= 0x10FFFF) or 0xD800 <= point <= 0xDFFF:
            raise ValueError(f"CODE_POINTS_TO_STRING: invalid code point {point}")
    return "".join(chr(p) for p in points)


def _unassigned(text: str, what: str) -> None:
    """A character Python's Unicode tables do not know may have a case mapping in the newer Unicode that BigQuery's
    ICU reads: refused, not passed through unchanged."""
    for ch in text:
        if ch > "\x7f" and unicodedata.category(ch) == "Cn":
            raise ValueError(f"{what}: the character U+{ord(ch):04X} is not in the local warehouse's Unicode "
                             f"{unicodedata.unidata_version} tables, so its case mapping is unknown here; run it on "
                             "BigQuery")


def upper_unicode(text, what):
    """UPPER(STRING) (string_functions#upper): ICU's root-locale full case mapping (ZetaSQL's UpperUtf8 calls
    icu::CaseMap::utf8ToUpper with the root locale), which Python's str.upper is: Unicode's default full case
    conversion, 'ß' to 'SS', 'ﬁ' to 'FI'."""
    if text is None:
        return None
    _unassigned(text, what)
    return text.upper()


def lower_unicode(text, what):
    """LOWER(STRING): ICU's root-locale full lowercase mapping, final sigma included ('ΟΔΟΣ' to 'οδος', 'İ' to
    'i' with U+0307), as Python's str.lower does."""
    if text is None:
        return None
    _unassigned(text, what)
    return text.lower()


def upper_bytes(data):
    """UPPER(BYTES): ASCII letters only, every byte above 127 kept (ZetaSQL's UpperBytes)."""
    return None if data is None else bytes(data).upper()


def lower_bytes(data):
    return None if data is None else bytes(data).lower()


def _simple_upper(ch: str) -> str:
    """ICU's u_toupper: Unicode's simple (one code point) uppercase mapping. Where the full mapping has more than
    one code point, the simple one is the titlecase letter if that is one code point ('ᾳ' to 'ᾼ'), else none
    ('ß' stays): checked against UnicodeData.txt for every code point of Unicode 14."""
    upper = ch.upper()
    if len(upper) == 1:
        return upper
    title = ch.title()
    return title if len(title) == 1 else ch


def _simple_lower(ch: str) -> str:
    lower = ch.lower()
    if len(lower) == 1:
        return lower
    return "i" if ch == "\u0130" else ch  # 'İ' is the one letter whose full lowercase has two code points


# ICU's White_Space property (PropList.txt), which ZetaSQL's INITCAP adds to its default delimiters
_WHITE_SPACE = frozenset("\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(chr(c) for c in range(0x2000, 0x200B))
                         + "\u2028\u2029\u202f\u205f\u3000")
_INITCAP_DELIMITERS = frozenset('[](){}/|\\<>!?@"#$&~_,.:;*%+-^') | _WHITE_SPACE


def initcap(text, delimiters, what):
    """INITCAP(value[, delimiters]) (string_functions#initcap) as ZetaSQL's Utf8Capitalizer computes it: per code
    point, the simple uppercase mapping after a delimiter (or at the start), the simple lowercase mapping elsewhere;
    the default delimiters are its punctuation and every White_Space character, given delimiters replace them."""
    if text is None:
        return None
    _unassigned(text, what)
    if delimiters is None:
        stops = _INITCAP_DELIMITERS
    else:
        stops = frozenset(delimiters)
    out, capitalize = [], True
    for ch in text:
        if ch in stops:
            out.append(ch)
            capitalize = True
        elif capitalize:
            out.append(_simple_upper(ch))
            capitalize = False
        else:
            out.append(_simple_lower(ch))
    return "".join(out)


def split_bytes(value, delimiter):
    """SPLIT(BYTES, BYTES) (string_functions#split): the pieces between non-overlapping delimiters, left to
    right; an empty delimiter gives each byte; an empty value gives one empty BYTES."""
    if value is None or delimiter is None:
        return None
    value, delimiter = bytes(value), bytes(delimiter)
    if not delimiter:
        return [value[i:i + 1] for i in range(len(value))] or [b""]
    return value.split(delimiter)


def register(con) -> None:
    import duckdb
    from duckdb.sqltypes import DuckDBPyType

    text, flag, blob = DuckDBPyType("VARCHAR"), DuckDBPyType("BOOLEAN"), DuckDBPyType("BLOB")
    points, big = DuckDBPyType("BIGINT[]"), DuckDBPyType("BIGINT")
    for name, function, args, result in (("bq_normalize", normalize, [text, text, flag], text),
                                         ("bq_code_points", code_points, [text], points),
                                         ("bq_byte_values", byte_values, [blob], points),
                                         ("code_points_to_string", code_points_to_string, [points], text),
                                         ("bq_split_bytes", split_bytes, [blob, blob], DuckDBPyType("BLOB[]")),
                                         ("bq_upper_unicode", upper_unicode, [text, text], text),
                                         ("bq_lower_unicode", lower_unicode, [text, text], text),
                                         ("bq_upper_bytes", upper_bytes, [blob], blob),
                                         ("bq_lower_bytes", lower_bytes, [blob], blob),
                                         ("bq_initcap_unicode", initcap, [text, text, text], text),
                                         ("bq_substr_bytes", substr_bytes, [blob, big, big], blob),
                                         ("bq_right_bytes", right_bytes, [blob, big], blob),
                                         ("bq_reverse_bytes", reverse_bytes, [blob], blob),
                                         ("bq_first_byte", first_byte, [blob], big),
                                         ("bq_translate_bytes", translate_bytes, [blob, blob, blob, text], blob),
                                         ("bq_soundex", soundex, [text], text),
                                         ("bq_safe_convert_bytes_to_string", safe_convert_bytes_to_string, [blob],
                                          text),
                                         ("bq_code_points_to_bytes", code_points_to_bytes, [points], blob)):
        try:
            con.create_function(name, function, args, result, null_handling="special", side_effects=False)
        except (duckdb.NotImplementedException, duckdb.CatalogException):  # already registered
            pass
    for macro in MACROS + TEXT_MACROS + [INITCAP_MACRO]:
        con.execute(macro)


def _call(name: str, *args: exp.Expression) -> exp.Expression:
    return exp.Anonymous(this=name, expressions=list(args))


def split(node: exp.Split, value_kind: str | None, what: str) -> exp.Expression:
    """SPLIT(value, delimiter) by the value's type as the translation sees it ('bytes', another, or None)."""
    value, delimiter = node.this, node.expression
    if value_kind == "bytes":
        # sqlglot writes SPLIT(b) with the STRING ',' that only the STRING signature has as its default
        if (isinstance(delimiter, exp.Literal) and delimiter.is_string) or (
                delimiter.type is not None and delimiter.type.this in (exp.DataType.Type.TEXT, exp.DataType.Type.VARCHAR)):
            raise QueryError(f"{what}: No matching signature for SPLIT(BYTES, STRING): a BYTES value needs a "
                             "BYTES delimiter (there is no default for BYTES)")
        return _call("bq_split_bytes", value, delimiter)
    bytes_delimiter = isinstance(delimiter, exp.ByteString) or (delimiter.type is not None and delimiter.type.this in (
        exp.DataType.Type.BINARY, exp.DataType.Type.VARBINARY))
    if value_kind is None:  # checked where it runs: a BYTES delimiter asks for a BYTES value, any other for a STRING
        return _call("bq_split_blob" if bytes_delimiter else "bq_split_text", value, delimiter, exp.Literal.string(what))
    if bytes_delimiter:
        raise QueryError(f"{what}: No matching signature for SPLIT with a BYTES delimiter: a STRING value needs a "
                         "STRING delimiter, a BYTES value a BYTES one")
    return node


def case_mapping(node: exp.Expression, value_kind: str | None, what: str) -> exp.Expression:
    """UPPER(x) or LOWER(x) by x's type as the translation sees it ('bytes', another, or None: told where it runs)."""
    name = "upper" if isinstance(node, exp.Upper) else "lower"
    if value_kind == "bytes":
        return _call(f"bq_{name}_bytes", node.this)
    return _call(f"bq_{name}", node.this, exp.Literal.string(what))


def _ascii_initcap_sql() -> str:
    """The DuckDB expression sqlglot writes for INITCAP(s, <class>), with the character class of ZetaSQL's default
    delimiters that are ASCII (sqlglot's own default leaves out the backslash), escaped for a regex class."""
    import sqlglot

    ascii_stops = sorted(c for c in _INITCAP_DELIMITERS if c < "\x80")
    escaped = "".join("\\" + c if c in "[]\\^-" else c for c in ascii_stops)
    literal = exp.Literal.string(escaped).sql(dialect="bigquery")
    return sqlglot.transpile(f"SELECT INITCAP(s, {literal})", read="bigquery", write="duckdb")[0][len("SELECT "):]


# INITCAP with the default delimiters: ASCII text (as many bytes as characters) on DuckDB, any other through initcap
INITCAP_MACRO = f"""CREATE OR REPLACE MACRO bq_initcap(s, what) AS CASE
     WHEN strlen(s) = length(s) THEN {_ascii_initcap_sql()} ELSE bq_initcap_unicode(s, NULL, what) END"""
# sqlglot reads INITCAP(x) as INITCAP(x, <this default>)
_SQLGLOT_DEFAULT = ' \t\n\r\x0c\x0b\\[\\](){}/|<>!?@"^#$&~_,.:;*%+\\-'


def initcap_call(node: exp.Expression, what: str) -> exp.Expression:
    """INITCAP(x) with the default delimiters (bq_initcap), or INITCAP(x, delimiters) through initcap (the given
    characters, which sqlglot would put unescaped in a regex class)."""
    delimiters = node.args.get("expression")
    if delimiters is None or (isinstance(delimiters, exp.Literal) and delimiters.this == _SQLGLOT_DEFAULT):
        return _call("bq_initcap", node.this, exp.Literal.string(what))
    return _call("bq_initcap_unicode", node.this, delimiters, exp.Literal.string(what))


def fix(node: exp.Expression) -> exp.Expression | None:
    kind = type(node).__name__
    if kind == "Normalize":
        form = node.args.get("form")
        name = form.name.upper() if isinstance(form, (exp.Var, exp.Column, exp.Identifier)) else "NFC"
        if name not in _FORMS:
            raise QueryError(f"NORMALIZE: unknown normalization mode {name}; use NFC, NFKC, NFD or NFKD")
        return _call("bq_normalize", node.this, exp.Literal.string(name),
                     exp.Boolean(this=bool(node.args.get("is_casefold"))))
    if kind == "Unicode":
        return _call("bq_unicode", node.this)
    if kind == "ToCodePoints":
        return _call("bq_to_code_points", node.this)
    if isinstance(node, exp.Cast) and not isinstance(node, exp.TryCast) and node.to.is_type("binary", "varbinary"):
        return _call("bq_bytes", node.this)
    return None


# SUBSTR, LEFT, RIGHT, REPEAT, TRANSLATE, REVERSE, ASCII and CHR as string_functions documents them, where DuckDB's
# own differ: a negative length or count is BigQuery's error (DuckDB gave ''), a position before the start counts
# from 1 (DuckDB's SUBSTR('abcde', -10, 2) was ''), REVERSE reverses code points (DuckDB's keeps a letter and its
# combining marks together), BYTES take the byte-wise reading (DuckDB had no signature for most of them)
TEXT_MACROS = [
    """CREATE OR REPLACE MACRO bq_substr_start(n, p) AS CASE
         WHEN p = 0 OR p < -n THEN 1 WHEN p < 0 THEN n + p + 1 WHEN p > n THEN n + 1 ELSE p END""",
]

# a value of another type than STRING is left to DuckDB's binder, which refuses it before the query runs (a BYTES
# value whose type the translation could not tell included)

RAISING_MACROS += [
    """CREATE OR REPLACE MACRO bq_substr(x, p, l, what) AS CASE
         WHEN p IS NULL OR l IS NULL THEN NULL
         WHEN l < 0 THEN error(what || ': Third argument in SUBSTR() cannot be negative')
         ELSE substring(x, bq_substr_start(length(substring(x, 1)), p), least(l, length(x))) END""",
    """CREATE OR REPLACE MACRO bq_substr_b(x, p, l, what) AS CASE
         WHEN l < 0 THEN error(what || ': Third argument in SUBSTR() cannot be negative')
         ELSE bq_substr_bytes(x, p, l) END""",
    """CREATE OR REPLACE MACRO bq_left(x, n, what) AS CASE
         WHEN n < 0 THEN error(what || ': Second argument in LEFT() cannot be negative')
         ELSE left(x, least(n, length(left(x, 0)) + length(x))) END""",
    """CREATE OR REPLACE MACRO bq_left_b(x, n, what) AS CASE
         WHEN n < 0 THEN error(what || ': Second argument in LEFT() cannot be negative')
         ELSE bq_substr_bytes(x, 1, n) END""",
    """CREATE OR REPLACE MACRO bq_right(x, n, what) AS CASE
         WHEN n < 0 THEN error(what || ': Second argument in RIGHT() cannot be negative')
         ELSE right(x, least(n, length(right(x, 0)) + length(x))) END""",
    """CREATE OR REPLACE MACRO bq_right_b(x, n, what) AS CASE
         WHEN n < 0 THEN error(what || ': Second argument in RIGHT() cannot be negative')
         ELSE bq_right_bytes(x, n) END""",
    """CREATE OR REPLACE MACRO bq_repeat(x, n, what) AS CASE
         WHEN n < 0 THEN error(what || ': Second argument (repeat count) for REPEAT cannot be negative')
         ELSE repeat(x, n) END""",
    """CREATE OR REPLACE MACRO bq_translate(x, s, t, what) AS CASE
         WHEN length(list_distinct(string_split(s, ''))) < length(s)
           THEN error(what || ': Duplicate character in TRANSLATE source characters: ' || s)
         ELSE translate(x, s, t) END""",
    """CREATE OR REPLACE MACRO bq_reverse(x, what) AS array_to_string(list_reverse(string_split(x, '')), '')""",
    """CREATE OR REPLACE MACRO bq_ascii(x, what) AS CASE
         WHEN x = '' THEN 0
         WHEN unicode(x) > 127
           THEN error(what || ': Argument to ASCII is not a structurally valid ASCII string: ' || x)
         ELSE unicode(x) END""",
    # CHR(0): the documentation gives '' where ZetaSQL's reference implementation writes the NUL character
    """CREATE OR REPLACE MACRO bq_chr(x, what) AS CASE
         WHEN x = 0 THEN error(what || ': CHR(0) is not supported by the local warehouse (BigQuery''s documentation '
              || 'gives an empty string, its reference implementation the NUL character); run it on BigQuery')
         WHEN x < 0 OR x > 1114111 OR x BETWEEN 55296 AND 57343 THEN error(what || ': Invalid codepoint ' || x)
         ELSE chr(CAST(x AS INTEGER)) END""",
]


def substr_bytes(data, position, length):
    """SUBSTR(BYTES, position, length) byte-wise, with the positions SUBSTR documents for STRING."""
    if data is None or position is None or length is None:
        return None
    data = bytes(data)
    n = len(data)
    start = 1 if position == 0 or position < -n else (n + position + 1 if position < 0 else min(position, n + 1))
    return data[start - 1:start - 1 + length]


def right_bytes(data, length):
    if data is None or length is None:
        return None
    data = bytes(data)
    return data[len(data) - min(length, len(data)):]


def reverse_bytes(data):
    return None if data is None else bytes(data)[::-1]


def first_byte(data):
    return None if data is None else (bytes(data)[0] if data else 0)


def translate_bytes(data, source, target, what):
    """TRANSLATE(BYTES, ...) byte for byte; a byte twice in the source is an error, a source byte past the target's
    end is removed."""
    if data is None or source is None or target is None:
        return None
    source, target = bytes(source), bytes(target)
    if len(set(source)) < len(source):
        raise ValueError(f"{what}: Duplicate byte in TRANSLATE source bytes")
    mapping = {s: (target[i:i + 1]) for i, s in enumerate(source)}
    return b"".join(mapping.get(b, bytes([b])) for b in bytes(data))


# SOUNDEX's digits for the ASCII letters (ZetaSQL's Soundex): vowels, H, W and Y are 0, every other byte is skipped
_SOUNDEX = {c: d for d, letters in enumerate(("AEIOUYHW", "BFPV", "CGJKQSXZ", "DT", "L", "MN", "R"))
            for c in letters + letters.lower()}


def soundex(text):
    """SOUNDEX (string_functions#soundex) as ZetaSQL's reference implementation computes it: the first ASCII letter
    as written, then the digits of the following consonants, skipping a digit equal to the last one kept (a vowel
    between them does not separate them), padded with 0 to four characters; no ASCII letter gives ''."""
    if text is None:
        return None
    out, previous = "", None
    for ch in text:
        digit = _SOUNDEX.get(ch)
        if digit is None:
            continue
        if not out:
            out, previous = ch, digit
        elif digit != 0 and digit != previous:
            out += str(digit)
            previous = digit
        if len(out) == 4:
            break
    return out.ljust(4, "0") if out else ""


def _each_byte_replaced(error: UnicodeDecodeError):
    return "\ufffd" * (error.end - error.start), error.end


import codecs  # noqa: E402

codecs.register_error("kfkit_each_byte", _each_byte_replaced)


def safe_convert_bytes_to_string(data):
    """SAFE_CONVERT_BYTES_TO_STRING: every byte of an ill-formed UTF-8 sequence becomes U+FFFD (ZetaSQL's
    SafeConvertBytes replaces each byte, not each sequence)."""
    return None if data is None else bytes(data).decode("utf-8", errors="kfkit_each_byte")


def code_points_to_bytes(points):
    if points is None or any(p is None for p in points):
        return None
    for point in points:
        if not 0 <= point <= 255:
            raise ValueError(f"CODE_POINTS_TO_BYTES: Invalid ASCII value {point}")
    return bytes(points)


_LONG = exp.Literal.number(9223372036854775807)


def text_call(node: exp.Expression, value_kind: str | None, where) -> exp.Expression | None:
    """The BigQuery forms of SUBSTR, LEFT, RIGHT, REPEAT, TRANSLATE, REVERSE, ASCII, CHR, SOUNDEX,
    SAFE_CONVERT_BYTES_TO_STRING and CODE_POINTS_TO_BYTES, by the value's type as the translation sees it ('bytes',
    another, or None: a BYTES value is then an error where it runs)."""
    blob = value_kind == "bytes"
    if isinstance(node, exp.Substring):
        length = node.args.get("length")
        return _call("bq_substr_b" if blob else "bq_substr", node.this, node.args.get("start") or exp.Literal.number(1),
                     length if length is not None else _LONG.copy(), exp.Literal.string(where("SUBSTR")))
    if isinstance(node, (exp.Left, exp.Right)):
        name = "LEFT" if isinstance(node, exp.Left) else "RIGHT"
        return _call(f"bq_{name.lower()}{'_b' if blob else ''}", node.this, node.expression,
                     exp.Literal.string(where(name)))
    if isinstance(node, exp.Repeat):
        return _call("bq_repeat", node.this, node.args.get("times"), exp.Literal.string(where("REPEAT")))
    kind = type(node).__name__
    if kind == "Translate":
        if blob:
            return _call("bq_translate_bytes", node.this, node.args.get("from_"), node.args.get("to"),
                         exp.Literal.string(where("TRANSLATE")))
        return _call("bq_translate", node.this, node.args.get("from_"), node.args.get("to"),
                     exp.Literal.string(where("TRANSLATE")))
    if kind == "Reverse":
        return _call("bq_reverse_bytes", node.this) if blob else _call("bq_reverse", node.this,
                                                                        exp.Literal.string(where("REVERSE")))
    if kind == "Ascii":
        return _call("bq_first_byte", node.this) if blob else _call("bq_ascii", node.this,
                                                                     exp.Literal.string(where("ASCII")))
    if kind == "Chr":
        return _call("bq_chr", node.expressions[0] if node.expressions else node.this, exp.Literal.string(where("CHR")))
    if kind == "Soundex":
        return _call("bq_soundex", node.this)
    if kind == "SafeConvertBytesToString":
        return _call("bq_safe_convert_bytes_to_string", node.this)
    if kind == "CodePointsToBytes":
        return _call("bq_code_points_to_bytes", node.this)
    return None
