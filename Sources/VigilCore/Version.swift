internal import CVigilVersion

/// Vigil's version, read from the repository's VERSION file at build time. Every binary prints it
/// with `--version`, and `packaging/build-deb` names the packages after it.
public enum VigilVersion {
    /// The version, e.g. `0.1.0`.
    public static let string: String = {
        let raw = String(cString: cvigil_version())
        return String(raw.filter { !$0.isWhitespace })
    }()
}
