import Foundation

/// The drills `vigilctl selftest` runs, in order. Every rule named here is in `Policies/rules/`
/// (the drills marked `needsProfile` run its drill-profile copy from `Policies/drills/`, same
/// id, paths under the scratch root). Each drill writes only below its own directory
/// (`ctx.directory`, `ctx.sharedMemoryDirectory`) or, for drill-profile paths, below the scratch
/// root; commands run with the drill's directory as current directory.
public enum DrillCatalog {
    public static let all: [Drill] = [
        // Persistence
        Drill(
            id: "ssh-authorized-keys",
            technique: "T1098.004",
            name: "SSH key added to authorized_keys",
            rule: "0320f33d-d5fd-5018-bb7e-fcfefb7a95eb",
            directories: ["root/.ssh"],
            run: { ctx in
                try ctx.write(
                    ctx.path("root/.ssh/authorized_keys"),
                    "ssh-ed25519 \(fakeKey) vigil-drill\n",
                    mode: 0o600
                )
            }
        ),
        Drill(
            id: "ssh-key-append",
            technique: "T1098.004",
            name: "echo key >> authorized_keys",
            rule: "d02e61c4-15ab-51ee-a95c-5fdfc1112609",
            directories: ["home/drill/.ssh"],
            run: { ctx in
                try await ctx.shell(
                    "echo 'ssh-ed25519 \(fakeKey) vigil-drill' >> \(ctx.path("home/drill/.ssh/authorized_keys"))"
                )
            }
        ),
        Drill(
            id: "cron-job",
            technique: "T1053.003",
            name: "cron job dropped in cron.d",
            rule: "f5f20b2d-3d5e-5682-87a0-d22a00083e00",
            needsProfile: true,
            directories: ["/etc/cron.d"],
            evidence: { $0.scratch.root + "/etc/cron.d/vigil-drill-cron-job" },
            run: { ctx in
                try ctx.write(ctx.scratch.root + "/etc/cron.d/vigil-drill-cron-job", "* * * * * root /bin/true\n")
            },
            undo: { ctx in ctx.remove(ctx.scratch.root + "/etc/cron.d/vigil-drill-cron-job") }
        ),
        Drill(
            id: "systemd-service",
            technique: "T1543.002",
            name: "systemd service unit installed",
            rule: "b6af2faf-8fac-5ccb-b14b-180a9fbdb9b0",
            needsProfile: true,
            directories: ["/etc/systemd/system"],
            evidence: { $0.scratch.root + "/etc/systemd/system/vigil-drill-systemd-service.service" },
            run: { ctx in
                try ctx.write(
                    ctx.scratch.root + "/etc/systemd/system/vigil-drill-systemd-service.service",
                    "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"
                )
            },
            undo: { ctx in ctx.remove(ctx.scratch.root + "/etc/systemd/system/vigil-drill-systemd-service.service") }
        ),
        Drill(
            id: "shell-profile",
            technique: "T1546.004",
            name: "command appended to .bashrc",
            rule: "4c22b8b6-d283-563d-8d89-fc92953f7843",
            directories: ["home/drill"],
            run: { ctx in try ctx.write(ctx.path("home/drill/.bashrc"), "/bin/true # vigil drill\n") }
        ),
        Drill(
            id: "kernel-module-file",
            technique: "T1547.006",
            name: "kernel module file written",
            rule: "d6c5430f-3cd1-58e1-bee5-655970938b88",
            run: { ctx in try ctx.write(ctx.path("vigil-drill.ko"), "not a module\n") }
        ),
        Drill(
            id: "ld-preload",
            technique: "T1574.006",
            name: "ld.so.preload written",
            rule: "748510e1-e05a-59c2-b1b4-22f69765fd7f",
            needsProfile: true,
            directories: ["/etc"],
            evidence: { $0.scratch.root + "/etc/ld.so.preload" },
            run: { ctx in try ctx.write(ctx.scratch.root + "/etc/ld.so.preload", "/nonexistent/vigil-drill.so\n") },
            undo: { ctx in ctx.remove(ctx.scratch.root + "/etc/ld.so.preload") }
        ),
        Drill(
            id: "local-account",
            technique: "T1136.001",
            name: "useradd in a scratch root",
            rule: "b65140d9-0e46-56f5-a2ec-db6367b6e42f",
            directories: ["etc"],
            run: { ctx in
                // Account files of a scratch root; useradd --prefix edits only those. It runs in
                // a private mount namespace with tmpfs over /var/log and /var/mail, so its
                // lastlog/faillog/mail-spool side effects land nowhere.
                try ctx.write(ctx.path("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")
                try ctx.write(ctx.path("etc/group"), "root:x:0:\nusers:x:100:\n")
                try ctx.write(ctx.path("etc/shadow"), "root:*:19000:0:99999:7:::\n", mode: 0o600)
                try ctx.write(ctx.path("etc/gshadow"), "root:*::\nusers:*::\n", mode: 0o600)
                try await ctx.exec(
                    "/usr/bin/unshare",
                    [
                        "--mount", "--propagation", "private", "/bin/sh", "-c",
                        "mount -t tmpfs vigil-drill /var/log && mount -t tmpfs vigil-drill /var/mail"
                            + " && exec useradd --prefix \"$0\" -M -N -s /usr/sbin/nologin vigildrill",
                        ctx.directory,
                    ]
                )
            }
        ),
        // Privilege escalation
        Drill(
            id: "setuid-chmod",
            technique: "T1548.001",
            name: "chmod u+s on a scratch file",
            rule: "91e4d28f-b993-5973-a6a0-3056e8d5d88f",
            run: { ctx in
                try ctx.write(ctx.path("helper"), "#!/bin/sh\nexit 0\n", mode: 0o755)
                try await ctx.exec("/bin/chmod", ["-v", "u+s", ctx.path("helper")])
            }
        ),
        Drill(
            id: "setuid-file",
            technique: "T1548.001",
            name: "setuid bit appears on a file",
            rule: "b360a271-8e8e-5234-b274-924cd245d7d4",
            run: { ctx in
                try ctx.write(ctx.path("suid-helper"), "#!/bin/sh\nexit 0\n", mode: 0o755)
                guard chmod(ctx.path("suid-helper"), 0o4755) == 0 else {
                    throw DrillError("chmod \(ctx.path("suid-helper")): \(String(cString: strerror(errno)))")
                }
            }
        ),
        Drill(
            id: "sudoers-drop-in",
            technique: "T1548.003",
            name: "sudoers drop-in written",
            rule: "808c9f64-5845-5cd3-867b-68a6e9e3594d",
            needsProfile: true,
            directories: ["/etc/sudoers.d"],
            evidence: { $0.scratch.root + "/etc/sudoers.d/vigil-drill" },
            run: { ctx in
                try ctx.write(ctx.scratch.root + "/etc/sudoers.d/vigil-drill", "vigildrill ALL=(ALL) NOPASSWD: ALL\n")
            },
            undo: { ctx in ctx.remove(ctx.scratch.root + "/etc/sudoers.d/vigil-drill") }
        ),
        // Execution
        Drill(
            id: "exec-from-tmp",
            technique: "T1059.004",
            name: "program run from /tmp",
            rule: "0a1144fd-ee5e-54b9-9f58-22acea583fbd",
            evidence: { $0.path("payload") },
            run: { ctx in
                try ctx.copyExecutable("/bin/echo", to: ctx.path("payload"))
                try await ctx.exec(ctx.path("payload"), ["vigil-drill"])
            }
        ),
        Drill(
            id: "exec-from-dev-shm",
            technique: "T1059.004",
            name: "program run from /dev/shm",
            rule: "0a1144fd-ee5e-54b9-9f58-22acea583fbd",
            evidence: { $0.sharedMemoryDirectory + "/payload" },
            run: { ctx in
                try ctx.copyExecutable("/bin/echo", to: ctx.sharedMemoryDirectory + "/payload")
                try await ctx.exec(ctx.sharedMemoryDirectory + "/payload", ["vigil-drill"])
            }
        ),
        Drill(
            id: "base64-pipe-shell",
            technique: "T1059.004",
            name: "base64-decoded script piped to sh",
            rule: "7a658165-c802-4edd-a858-c5b505946e27",
            run: { ctx in
                // "exit 0" encoded; the pipeline decodes and runs it.
                try await ctx.shell("echo ZXhpdCAwCg== | base64 -d | sh")
            }
        ),
        Drill(
            id: "reverse-shell-dev-tcp",
            technique: "T1059.004",
            name: "bash /dev/tcp connection to a local listener",
            rule: "33e53c13-c29e-5a26-953f-70bed1deced9",
            run: { ctx in
                try await ctx.exec(
                    "/bin/bash",
                    [
                        "-c",
                        "exec 3<>/dev/tcp/127.0.0.1/\(ctx.serverPort) && echo vigil-drill >&3 && exec 3>&-; echo done",
                    ]
                )
            }
        ),
        Drill(
            id: "reverse-shell-perl",
            technique: "T1059.004",
            name: "perl socket one-liner (never spawns the shell)",
            rule: "4f0997b8-6816-555a-abc7-4e90b42474d4",
            run: { ctx in
                // Connects to the local listener and exits before the exec("/bin/sh") that a real
                // reverse shell would run: the command line is the real shape, the effect is nil.
                let script =
                    "use Socket; socket(S,PF_INET,SOCK_STREAM,getprotobyname('tcp')) or die;"
                    + " connect(S,sockaddr_in(\(ctx.serverPort),inet_aton('127.0.0.1'))) or die;"
                    + " print S \"vigil-drill\\n\"; close(S); print \"done\\n\"; exit 0; exec('/bin/sh -i');"
                try await ctx.exec("/usr/bin/perl", ["-e", script])
            }
        ),
        Drill(
            id: "download-and-chmod",
            technique: "T1105",
            name: "curl to /tmp and chmod +x (local server)",
            rule: "464c129a-0bc5-58fd-9e5b-4166b00dd507",
            run: { ctx in
                try await ctx.shell(
                    "curl -fsS -o \(ctx.path("dropper")) http://127.0.0.1:\(ctx.serverPort)/dropper"
                        + " && chmod +x \(ctx.path("dropper"))"
                )
            }
        ),
        Drill(
            id: "download-pipe-shell",
            technique: "T1105",
            name: "curl | sh from a local server",
            rule: "44c04ba5-b345-5301-892d-48c6e63a97c5",
            run: { ctx in try await ctx.shell("curl -fsS http://127.0.0.1:\(ctx.serverPort)/install.sh | sh") }
        ),
        // Credential access
        Drill(
            id: "shadow-read",
            technique: "T1003.008",
            name: "cat of a shadow file (a fake copy)",
            rule: "e01fe284-affd-52d9-b7d1-7d5aebbd79c5",
            directories: ["etc"],
            run: { ctx in
                // A made-up shadow file, never the real one: its path ends in /etc/shadow.
                try ctx.write(ctx.path("etc/shadow"), "root:*:19000:0:99999:7:::\n", mode: 0o600)
                try await ctx.exec("/bin/cat", [ctx.path("etc/shadow")])
            }
        ),
        // Defense evasion
        Drill(
            id: "history-deleted",
            technique: "T1070.003",
            name: ".bash_history deleted",
            rule: "cef2ac6e-25b5-57fb-a81e-d0638a4a4171",
            directories: ["home/drill"],
            run: { ctx in
                let history = ctx.path("home/drill/.bash_history")
                try ctx.write(history, "ls\n", mode: 0o600)
                // Let the sensor see the file before it goes.
                try await Task.sleep(for: .milliseconds(100))
                guard unlink(history) == 0 else {
                    throw DrillError("unlink \(history): \(String(cString: strerror(errno)))")
                }
            }
        ),
        Drill(
            id: "log-deleted",
            technique: "T1070.004",
            name: "rm of a file under var/log",
            rule: "0efd0599-a2fc-5d7f-a474-90d556a4ec91",
            directories: ["var/log"],
            run: { ctx in
                try ctx.write(ctx.path("var/log/auth.log"), "vigil drill\n")
                try await ctx.exec("/bin/rm", ["-v", "-f", ctx.path("var/log/auth.log")])
            }
        ),
        Drill(
            id: "sensitive-permissions",
            technique: "T1222.002",
            name: "chmod 0666 on a shadow file (a fake copy)",
            rule: "ca5208cd-7622-407d-a1b0-e124fb2cf03c",
            directories: ["etc"],
            run: { ctx in
                try ctx.write(ctx.path("etc/shadow"), "root:*:19000:0:99999:7:::\n", mode: 0o600)
                try await ctx.exec("/bin/chmod", ["-v", "0666", ctx.path("etc/shadow")])
            }
        ),
        Drill(
            id: "hidden-file-exec",
            technique: "T1564.001",
            name: "hidden executable run",
            rule: "8ed49457-94a8-4e0c-97bd-f34b24d0263a",
            evidence: { $0.path(".vigil-drill-hidden") },
            run: { ctx in
                try ctx.copyExecutable("/bin/echo", to: ctx.path(".vigil-drill-hidden"))
                try await ctx.exec(ctx.path(".vigil-drill-hidden"), ["vigil-drill"])
            }
        ),
        // Discovery
        Drill(
            id: "port-scan-netns",
            technique: "T1046",
            name: "port scan into a network namespace",
            rule: "554896d7-c907-4a11-b956-47869b5488fc",
            run: { ctx in try await PortScanDrill.run(ctx) },
            undo: { ctx in PortScanDrill.undo(ctx) }
        ),
    ]

    /// Not a key: the right shape for the rules, no private half anywhere.
    static let fakeKey = "AAAAC3NzaC1lZDI1NTE5AAAAIHZpZ2lsLWRyaWxsLW5vdC1hLXJlYWwta2V5LTAwMDA"
}

/// T1046: a network namespace with one end of a veth pair (10.213.x.2/30), the other end on
/// the host (10.213.x.1/30); a bash `/dev/tcp` loop probes 16 ports of the namespace's
/// address, where nothing listens (each probe is answered by a reset). Undo deletes the
/// namespace, which deletes both ends of the pair.
enum PortScanDrill {
    static func names(_ ctx: DrillContext) -> (namespace: String, host: String, peer: String, subnet: Int) {
        let short = String(ctx.scratch.token.prefix(6))
        let subnet = Int(ctx.scratch.token.suffix(2), radix: 16).map { $0 % 64 } ?? 0
        return ("vigil-drill-\(short)", "vd\(short)h", "vd\(short)n", subnet * 4)
    }

    static func run(_ ctx: DrillContext) async throws {
        let (ns, host, peer, base) = names(ctx)
        let hostAddress = "10.213.\(base / 256).\(base % 256 + 1)"
        let peerAddress = "10.213.\(base / 256).\(base % 256 + 2)"
        let ip = "/usr/sbin/ip"
        try await ChildCommand.run(ip, ["netns", "add", ns])
        try await ChildCommand.run(ip, ["link", "add", host, "type", "veth", "peer", "name", peer, "netns", ns])
        try await ChildCommand.run(ip, ["addr", "add", hostAddress + "/30", "dev", host])
        try await ChildCommand.run(ip, ["link", "set", host, "up"])
        try await ChildCommand.run(ip, ["-n", ns, "addr", "add", peerAddress + "/30", "dev", peer])
        try await ChildCommand.run(ip, ["-n", ns, "link", "set", peer, "up"])
        let ports = [21, 22, 23, 25, 53, 80, 110, 139, 143, 443, 445, 3306, 3389, 5432, 6379, 8080]
        try await ctx.exec(
            "/bin/bash",
            [
                "-c",
                "for p in \(ports.map(String.init).joined(separator: " ")); do"
                    + " (exec 3<>/dev/tcp/\(peerAddress)/$p) 2>/dev/null; done; echo done",
            ],
            timeout: .seconds(20)
        )
    }

    static func undo(_ ctx: DrillContext) {
        let (ns, host, _, _) = names(ctx)
        ChildCommand.runQuietly("/usr/sbin/ip", ["link", "del", host])
        ChildCommand.runQuietly("/usr/sbin/ip", ["netns", "del", ns])
    }
}
