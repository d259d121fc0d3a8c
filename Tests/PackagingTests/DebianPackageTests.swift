import Foundation
import Testing
import VigilTestSupport

/// The .deb packages, end to end: `packaging/build-deb` builds them from the suite's debug build,
/// lintian reviews them, and they are installed, upgraded, removed and purged in a fresh Debian 12
/// root (mmdebstrap's minbase, cached under /var/cache between runs). Needs root (chroot, file
/// owners) and the tools .ci/deps installs; outside CI a missing one skips, in CI it fails.
@Suite("Debian packages", .serialized)
struct DebianPackageTests {
    @Test("the packaging tests have root and their tools in CI")
    func prerequisitesInCI() {
        #expect(Packaging.missingPrerequisite == nil || !TestEnvironment.isCI, "\(Packaging.missingPrerequisite ?? "")")
    }

    @Test(
        "lintian finds no errors in either package",
        .enabled(if: Packaging.missingPrerequisite == nil || TestEnvironment.isCI, "\(Packaging.skipReason)")
    )
    func lintian() async throws {
        let debs = try await Packaging.shared.packages()
        let result = try await Packaging.shell(
            "lintian --no-cfg --fail-on error \(debs.version1.agent) \(debs.version1.collector)",
            timeout: .seconds(900)
        )
        #expect(result.status == 0, "lintian:\n\(result.stdout)\(result.stderr)")
        #expect(!result.stdout.contains("E: "), "lintian errors:\n\(result.stdout)")
    }

    @Test(
        "install, check, upgrade, remove and purge in a fresh Debian 12 root",
        .enabled(if: Packaging.missingPrerequisite == nil || TestEnvironment.isCI, "\(Packaging.skipReason)"),
        .timeLimit(.minutes(20))
    )
    func lifecycle() async throws {
        let debs = try await Packaging.shared.packages()
        let root = try await DebianRoot.make()
        defer { root.remove() }
        let pristine = try await root.paths()

        // Install: maintainer scripts run, the agent is enabled but not started without a collector.
        let install = try await root.run("dpkg -i /debs/*-1_amd64.deb", debs: debs.directory)
        #expect(install.status == 0, "dpkg -i:\n\(install.stdout)\(install.stderr)")
        #expect(
            install.stderr.contains("vigild is installed and enabled but not started")
                && install.stderr.contains("missing 'collector:'"),
            "no clear message about the missing collector settings:\n\(install.stderr)"
        )
        #expect(install.stderr.contains("vigilctl tokens create"), "\(install.stderr)")

        // Files, owners and modes.
        let expected: [(String, String)] = [
            ("/usr/bin/vigild", "root:root 755 regular file"),
            ("/usr/bin/vigilctl", "root:root 755 regular file"),
            ("/usr/bin/vigil-collector", "root:root 755 regular file"),
            ("/etc/vigil/vigild.yaml", "root:root 600 regular file"),
            ("/etc/vigil/policies/collection.yaml", "root:root 644 regular file"),
            ("/var/lib/vigil", "root:root 700 directory"),
            ("/var/lib/vigil/agent.key", "root:root 600 regular file"),
            ("/etc/vigil-collector/environment", "root:root 600 regular file"),
            ("/var/lib/vigil-collector", "vigil-collector:vigil-collector 700 directory"),
            ("/lib/systemd/system/vigild.service", "root:root 644 regular file"),
            ("/lib/systemd/system/vigil-collector.service", "root:root 644 regular file"),
            ("/etc/systemd/system/multi-user.target.wants/vigild.service", "root:root 777 symbolic link"),
            ("/etc/systemd/system/multi-user.target.wants/vigil-collector.service", "root:root 777 symbolic link"),
            ("/usr/share/man/man8/vigild.8.gz", "root:root 644 regular file"),
            ("/usr/share/man/man1/vigilctl.1.gz", "root:root 644 regular file"),
            ("/usr/share/man/man8/vigil-collector.8.gz", "root:root 644 regular file"),
            ("/usr/share/bash-completion/completions/vigilctl", "root:root 644 regular file"),
            ("/usr/share/zsh/vendor-completions/_vigild", "root:root 644 regular file"),
            ("/usr/share/fish/vendor_completions.d/vigil-collector.fish", "root:root 644 regular file"),
        ]
        let stats = try await root.run(
            expected.map { "stat -c '%n %U:%G %a %F' \($0.0)" }.joined(separator: "; ")
        )
        for (path, owner) in expected {
            #expect(
                stats.stdout.contains("\(path) \(owner)\n"),
                "\(path): want \(owner); got:\n\(stats.stdout)\(stats.stderr)"
            )
        }
        let user = try await root.run("getent passwd vigil-collector")
        #expect(user.stdout.hasSuffix(":/var/lib/vigil-collector:/usr/sbin/nologin\n"), "\(user)")
        let conffiles = try await root.run("dpkg-query -W -f='${Conffiles}\\n' vigil vigil-collector")
        for file in ["/etc/vigil/vigild.yaml", "/etc/vigil/policies/rules/", "/etc/vigil-collector/environment"] {
            #expect(conffiles.stdout.contains(file), "not a conffile: \(file)\n\(conffiles.stdout)")
        }
        let manPage = try await root.run("zcat /usr/share/man/man1/vigilctl.1.gz")
        #expect(manPage.stdout.contains(".SS vigilctl policy check"), "\(manPage.stdout.prefix(2000))")

        // The binaries run on a system without a Swift toolchain.
        for binary in ["vigild", "vigilctl", "vigil-collector"] {
            let version = try await root.run("\(binary) --version")
            #expect(version.status == 0 && version.stdout == debs.upstreamVersion + "\n", "\(binary): \(version)")
        }
        let check = try await root.run("vigilctl policy check /etc/vigil/policies")
        #expect(check.status == 0, "policy check:\n\(check.stdout)\(check.stderr)")
        let unconfigured = try await root.run("vigild --config /etc/vigil/vigild.yaml --check-config")
        #expect(unconfigured.status == 78, "\(unconfigured)")
        #expect(unconfigured.stderr.contains("/etc/vigil/vigild.yaml:"), "no file:line: \(unconfigured.stderr)")
        let verify = try await root.run(
            "systemd-analyze verify /lib/systemd/system/vigild.service /lib/systemd/system/vigil-collector.service"
        )
        #expect(
            verify.status == 0 && verify.stderr.isEmpty,
            "systemd-analyze verify:\n\(verify.stdout)\(verify.stderr)"
        )

        // The operator configures the agent and edits a rule; the agent and collector have state.
        let configure = try await root.run(
            """
            set -e
            cat > /etc/vigil/vigild.yaml <<'EOF'
            collector:
              url: https://collector.example:8443
              enroll_token: edited-token
            state_dir: /var/lib/vigil
            policies_dir: /etc/vigil/policies
            EOF
            echo '# tuned by the operator' >> /etc/vigil/policies/collection.yaml
            echo 'spooled batches' > /var/lib/vigil/spool.sqlite
            echo 'chain head' > /var/lib/vigil/chain.state
            echo 'stored events' > /var/lib/vigil-collector/events.sqlite
            echo 'VIGIL_ENROLL_TOKEN=edited-token' >> /etc/vigil-collector/environment
            sha256sum /var/lib/vigil/agent.key /etc/vigil/vigild.yaml /etc/vigil/policies/collection.yaml \
                /etc/vigil-collector/environment /var/lib/vigil/spool.sqlite /var/lib/vigil/chain.state \
                /var/lib/vigil-collector/events.sqlite
            """
        )
        #expect(configure.status == 0, "\(configure)")
        let configured = try await root.run("vigild --config /etc/vigil/vigild.yaml --check-config")
        #expect(configured.status == 0, "\(configured)")

        // Upgrade to the rebuilt, higher version: keys, state and edited configuration stay.
        let upgrade = try await root.run("dpkg -i /debs/*-2_amd64.deb", debs: debs.directory)
        #expect(upgrade.status == 0, "upgrade:\n\(upgrade.stdout)\(upgrade.stderr)")
        #expect(!upgrade.stderr.contains("not started"), "configured agent reported as not started:\n\(upgrade.stderr)")
        let versions = try await root.run("dpkg-query -W -f='${Package} ${Version} ${Status}\\n' vigil vigil-collector")
        #expect(
            versions.stdout
                == "vigil \(debs.upgradeVersion) install ok installed\nvigil-collector \(debs.upgradeVersion) install ok installed\n",
            "\(versions)"
        )
        let afterUpgrade = try await root.run(
            """
            sha256sum /var/lib/vigil/agent.key /etc/vigil/vigild.yaml /etc/vigil/policies/collection.yaml \
                /etc/vigil-collector/environment /var/lib/vigil/spool.sqlite /var/lib/vigil/chain.state \
                /var/lib/vigil-collector/events.sqlite
            """
        )
        #expect(
            afterUpgrade.stdout == configure.stdout,
            "state or configuration changed by the upgrade:\n\(afterUpgrade)"
        )
        let leftovers = try await root.run("find /etc/vigil /etc/vigil-collector -name '*.dpkg-*'")
        #expect(leftovers.stdout.isEmpty, "conffile prompts or copies: \(leftovers.stdout)")

        // Remove: programs and units go, configuration and state stay, the units are masked.
        let remove = try await root.run("dpkg -r vigil vigil-collector")
        #expect(remove.status == 0, "dpkg -r:\n\(remove.stdout)\(remove.stderr)")
        let removed = try await root.run(
            "for f in /usr/bin/vigild /usr/bin/vigil-collector /lib/systemd/system/vigild.service "
                + "/etc/vigil/vigild.yaml /var/lib/vigil/agent.key /var/lib/vigil-collector/events.sqlite; do "
                + "if [ -e $f ]; then echo \"present $f\"; else echo \"absent $f\"; fi; done"
        )
        #expect(
            removed.stdout == """
                absent /usr/bin/vigild
                absent /usr/bin/vigil-collector
                absent /lib/systemd/system/vigild.service
                present /etc/vigil/vigild.yaml
                present /var/lib/vigil/agent.key
                present /var/lib/vigil-collector/events.sqlite

                """,
            "\(removed)"
        )

        // Purge: nothing of Vigil is left (the system user stays, as Debian does).
        let purge = try await root.run("dpkg -P vigil vigil-collector")
        #expect(purge.status == 0, "dpkg -P:\n\(purge.stdout)\(purge.stderr)")
        let after = try await root.paths()
        let left = after.subtracting(pristine).filter { !DebianRoot.isBookkeeping($0) }.sorted()
        #expect(left.isEmpty, "left behind after purge:\n\(left.joined(separator: "\n"))")
        let status = try await root.run("dpkg-query -W vigil vigil-collector")
        #expect(status.status != 0, "still known to dpkg: \(status)")
    }
}

/// Builds the packages once for the suite.
actor Packaging {
    static let shared = Packaging()

    struct Debs: Sendable {
        /// Holds revision 1 and revision 2 (the upgrade) of both packages.
        let directory: String
        let upstreamVersion: String
        let upgradeVersion: String
        var version1: (agent: String, collector: String) {
            (
                directory + "/vigil_\(upstreamVersion)-1_amd64.deb",
                directory + "/vigil-collector_\(upstreamVersion)-1_amd64.deb"
            )
        }
    }

    private var built: Debs?

    static var repoRoot: String { #filePath.components(separatedBy: "/Tests/")[0] }

    /// What this machine lacks to run the packaging tests, if anything.
    static let missingPrerequisite: String? = {
        guard TestEnvironment.isRoot else { return "not root (chroot, file owners)" }
        for tool in ["dpkg-deb", "dpkg-shlibdeps", "lintian", "mmdebstrap", "python3", "strip", "unshare"] {
            let found = ["/usr/bin/", "/usr/sbin/", "/bin/", "/sbin/"].contains {
                FileManager.default.isExecutableFile(atPath: $0 + tool)
            }
            if !found { return "\(tool) is missing (.ci/deps installs it)" }
        }
        return nil
    }()

    static var skipReason: Comment { Comment(rawValue: missingPrerequisite ?? "") }

    /// `packaging/build-deb --configuration debug --no-build --revision 1 --revision 2`: relinks the
    /// suite's debug build with the static Swift runtime and packages it as revision 1 and as
    /// revision 2 (the upgrade).
    ///
    /// With `VIGIL_TEST_PACKAGES=DIR`, the packages in DIR are tested instead, as they are: what
    /// `packaging/build-deb --revision 1 --revision 2 --out DIR` made from a release build.
    func packages() async throws -> Debs {
        if let built { return built }
        let upstream = try String(contentsOfFile: Packaging.repoRoot + "/VERSION", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        if let given = ProcessInfo.processInfo.environment["VIGIL_TEST_PACKAGES"], !given.isEmpty {
            let debs = Debs(directory: given, upstreamVersion: upstream, upgradeVersion: upstream + "-2")
            let revisions = ["-1_amd64.deb", "-2_amd64.deb"].flatMap { suffix in
                ["vigil_", "vigil-collector_"].map { "\(given)/\($0)\(upstream)\(suffix)" }
            }
            for path in revisions where !FileManager.default.fileExists(atPath: path) {
                throw PackagingError(
                    "VIGIL_TEST_PACKAGES=\(given): \(path) is missing (build-deb --revision 1 --revision 2)"
                )
            }
            built = debs
            return debs
        }
        // One fixed place, emptied first, so that runs do not pile up hundreds of MB in /tmp.
        let directory = NSTemporaryDirectory() + "vigil-packaging-debs"
        TemporaryDirectory.removeTree(directory)
        // The build directory holding debug.yaml: two levels above the built products.
        let scratch = ((BuiltProducts.directory as NSString).deletingLastPathComponent as NSString)
            .deletingLastPathComponent
        let result = try await Packaging.shell(
            "\(Packaging.repoRoot)/packaging/build-deb --configuration debug --no-build --scratch-path \(scratch) "
                + "--revision 1 --revision 2 --out \(directory)",
            timeout: .seconds(600)
        )
        guard result.status == 0 else {
            throw PackagingError("build-deb failed:\n\(result.stdout)\(result.stderr)")
        }
        let debs = Debs(directory: directory, upstreamVersion: upstream, upgradeVersion: upstream + "-2")
        built = debs
        return debs
    }

    static func shell(
        _ script: String,
        timeout: Duration = .seconds(300)
    ) async throws -> (status: Int32, stdout: String, stderr: String) {
        try await runCommand("/bin/sh", ["-c", script], timeout: timeout)
    }
}

/// A fresh Debian 12 root: minbase plus the packages' dependencies and systemd (for
/// `systemd-analyze verify`), unpacked from the tarball `packaging/tests/debian-root` caches.
struct DebianRoot {
    let path: String

    static func make() async throws -> DebianRoot {
        // packaging/tests/debian-root makes the cached tarball once per machine (CI starts it in
        // the background from .ci/deps while it builds; this waits for that run).
        let made = try await Packaging.shell(
            "\(Packaging.repoRoot)/packaging/tests/debian-root",
            timeout: .seconds(900)
        )
        guard made.status == 0 else {
            throw PackagingError("packaging/tests/debian-root failed:\n\(made.stdout)\(made.stderr)")
        }
        let cachedTarball = made.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let path = NSTemporaryDirectory() + "vigil-debian12-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let unpack = try await Packaging.shell("tar -C \(path) -xf \(cachedTarball)")
        guard unpack.status == 0 else { throw PackagingError("unpacking \(cachedTarball): \(unpack.stderr)") }
        return DebianRoot(path: path)
    }

    /// Runs `script` with /bin/sh inside the root, in a private mount namespace holding its /proc
    /// and /dev (gone when the command ends); `debs` is mounted read-only at /debs.
    func run(_ script: String, debs: String? = nil) async throws -> (status: Int32, stdout: String, stderr: String) {
        var mounts = "mount -t proc proc \(path)/proc && mount --rbind /dev \(path)/dev"
        if let debs {
            mounts += " && mkdir -p \(path)/debs && mount --bind -o ro \(debs) \(path)/debs"
        }
        let child = try ChildProcess(
            "/usr/bin/unshare",
            [
                "--mount", "--propagation", "private", "/bin/sh", "-c",
                "\(mounts) && exec chroot \(path) /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "
                    + "DEBIAN_FRONTEND=noninteractive /bin/sh -c \"$0\"",
                script,
            ]
        )
        let status = await child.wait(timeout: .seconds(300))
        if debs != nil { rmdir(path + "/debs") }
        return (status, child.stdout, child.stderr)
    }

    /// Every path in the root but the virtual file systems and /tmp.
    func paths() async throws -> Set<String> {
        let result = try await run(
            "find / -xdev -path /proc -prune -o -path /dev -prune -o -path /tmp -prune -o -print"
        )
        guard result.status == 0 else { throw PackagingError("find: \(result.stderr)") }
        return Set(result.stdout.split(separator: "\n").map(String.init))
    }

    /// Paths that installing and purging any package leaves: dpkg's and the system's own records,
    /// and /run (a tmpfs on a running system: adduser's lock, systemd-analyze's scratch files).
    static func isBookkeeping(_ path: String) -> Bool {
        let prefixes = ["/var/lib/dpkg/", "/var/log/", "/var/cache/debconf/", "/run/"]
        let files = ["/etc/passwd-", "/etc/group-", "/etc/shadow-", "/etc/gshadow-", "/etc/subuid-", "/etc/subgid-"]
        return prefixes.contains { path.hasPrefix($0) } || files.contains(path)
    }

    /// Deletes the root, unless something is still mounted inside it (then deleting could reach
    /// the host's /dev): mounts are made in private namespaces, so this is only a safety net.
    func remove() {
        let mounts = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        let inside = mounts.split(separator: "\n").filter {
            $0.split(separator: " ").dropFirst(4).first?.hasPrefix(path) == true
        }
        guard inside.isEmpty else {
            Issue.record("not deleting \(path): still mounted inside it:\n\(inside.joined(separator: "\n"))")
            return
        }
        TemporaryDirectory.removeTree(path)
    }
}

struct PackagingError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
