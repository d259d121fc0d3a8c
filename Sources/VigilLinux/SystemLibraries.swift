internal import CPcap
internal import CSeccomp

/// Versions of the system libraries Vigil links (Debian's libpcap and libseccomp).
public enum SystemLibraries {
    /// libpcap's own description, e.g. `libpcap version 1.10.5 (with TPACKET_V3)`.
    public static var pcapVersion: String {
        String(cString: pcap_lib_version())
    }

    /// libseccomp's version as `major.minor.micro`.
    public static var seccompVersion: String {
        guard let version = seccomp_version() else { return "unknown" }
        return "\(version.pointee.major).\(version.pointee.minor).\(version.pointee.micro)"
    }
}
