/// JSON string literals written by hand, where `JSONEncoder` is too slow or orders keys its own
/// way (OCSF records, flow lines).
public enum JSONString {
    /// Appends `text` to `out` as a quoted JSON string: `"` and `\` escaped, line feed, carriage
    /// return and tab as `\n`, `\r`, `\t`, other control characters as `\u00XX`; everything
    /// else (slashes and non-ASCII characters too) as it is.
    /// - Parameter escapingDelete: also write DEL (U+007F) as `\u007f`, as OCSF records do.
    public static func append(_ text: String, to out: inout String, escapingDelete: Bool = false) {
        out += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20 || (escapingDelete && scalar.value == 0x7f):
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }

    /// `text` as a quoted JSON string; see `append(_:to:escapingDelete:)`.
    public static func quoted(_ text: String, escapingDelete: Bool = false) -> String {
        var out = ""
        append(text, to: &out, escapingDelete: escapingDelete)
        return out
    }
}
