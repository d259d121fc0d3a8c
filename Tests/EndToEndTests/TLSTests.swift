import Foundation
import Testing
import VigilTestSupport

/// Certificates made by the openssl CLI for one test: a CA, a second CA nobody trusts, a server
/// certificate for 127.0.0.1, an expired one, one for another host name, and a client certificate.
private struct TestPKI {
    let dir: String
    var caCert: String { dir + "/ca.crt" }
    var otherCACert: String { dir + "/other-ca.crt" }
    var serverCert: String { dir + "/server.crt" }
    var serverKey: String { dir + "/server.key" }
    var expiredCert: String { dir + "/expired.crt" }
    var wrongNameCert: String { dir + "/wrong-name.crt" }
    var clientCert: String { dir + "/client.crt" }
    var clientKey: String { dir + "/client.key" }

    init(in dir: String) async throws {
        self.dir = dir
        try FileManager.default.createDirectory(atPath: dir + "/ca-db", withIntermediateDirectories: true)
        try "".write(toFile: dir + "/ca-db/index.txt", atomically: true, encoding: .utf8)
        try "01\n".write(toFile: dir + "/ca-db/serial", atomically: true, encoding: .utf8)
        try """
        [ca]
        default_ca = test_ca
        [test_ca]
        database = \(dir)/ca-db/index.txt
        new_certs_dir = \(dir)/ca-db
        serial = \(dir)/ca-db/serial
        default_md = sha256
        policy = any
        unique_subject = no
        [any]
        commonName = supplied
        """.write(toFile: dir + "/ca.cnf", atomically: true, encoding: .utf8)
        try "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
            .write(toFile: dir + "/server.ext", atomically: true, encoding: .utf8)
        try "subjectAltName=DNS:collector.example\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
            .write(toFile: dir + "/wrong-name.ext", atomically: true, encoding: .utf8)
        try "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n"
            .write(toFile: dir + "/client.ext", atomically: true, encoding: .utf8)
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        let steps: [[String]] = [
            ["req", "-x509"] + ec + [
                "-keyout", "\(dir)/ca.key", "-out", caCert, "-subj", "/CN=Vigil test CA", "-days", "2",
            ],
            ["req", "-x509"] + ec + [
                "-keyout", "\(dir)/other-ca.key", "-out", otherCACert, "-subj", "/CN=Untrusted CA", "-days", "2",
            ],
            ["req"] + ec + ["-keyout", serverKey, "-out", "\(dir)/server.csr", "-subj", "/CN=127.0.0.1"],
            [
                "x509", "-req", "-in", "\(dir)/server.csr", "-CA", caCert, "-CAkey", "\(dir)/ca.key",
                "-CAcreateserial", "-out", serverCert, "-days", "2", "-extfile", "\(dir)/server.ext",
            ],
            [
                "x509", "-req", "-in", "\(dir)/server.csr", "-CA", caCert, "-CAkey", "\(dir)/ca.key",
                "-CAcreateserial", "-out", wrongNameCert, "-days", "2", "-extfile", "\(dir)/wrong-name.ext",
            ],
            [
                "ca", "-batch", "-config", "\(dir)/ca.cnf", "-cert", caCert, "-keyfile", "\(dir)/ca.key",
                "-startdate", "20200101000000Z", "-enddate", "20200102000000Z", "-in", "\(dir)/server.csr",
                "-out", expiredCert, "-extfile", "\(dir)/server.ext",
            ],
            ["req"] + ec + ["-keyout", clientKey, "-out", "\(dir)/client.csr", "-subj", "/CN=agent-1"],
            [
                "x509", "-req", "-in", "\(dir)/client.csr", "-CA", caCert, "-CAkey", "\(dir)/ca.key",
                "-CAcreateserial", "-out", clientCert, "-days", "2", "-extfile", "\(dir)/client.ext",
            ],
        ]
        for step in steps {
            let result = try await runCommand("/usr/bin/openssl", step)
            guard result.status == 0 else {
                throw TLSTestError("openssl \(step.joined(separator: " ")) failed: \(result.stderr)")
            }
        }
    }
}

private struct TLSTestError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// HTTPS between agent, collector and vigilctl with certificates made for the test: the agent
/// ships only to a collector whose certificate chains to its CA and names the host, says why
/// when not and sends nothing; with --tls-client-ca the collector takes only clients with a
/// certificate from that CA.
@Suite("TLS between agent, collector and vigilctl", .serialized)
struct TLSTests {
    let dir: String

    init() throws {
        dir = NSTemporaryDirectory() + "vigil-tls-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir + "/watched", withIntermediateDirectories: true)
    }

    /// A collector on a free port with the given TLS options; returns it once it listens.
    func startCollector(_ tls: [String], token: String) async throws -> (ChildProcess, Int) {
        let port = freeLoopbackPort()
        let collector = try LocalDeployment.startCollector(
            port: port,
            store: "\(dir)/collector-\(port).sqlite",
            enrollToken: token,
            arguments: tls
        )
        let up = await eventually { collector.stderr.contains("collector listening") || !collector.isRunning }
        try #require(up && collector.isRunning, "collector did not start: \(collector.stderr)")
        return (collector, port)
    }

    /// The test's PKI, enrollment token and a collector serving the PKI's certificate for
    /// 127.0.0.1, once it listens; with `clientCA`, it takes only clients with a certificate
    /// from the test CA.
    fileprivate func startHTTPSCollector(
        clientCA: Bool = false
    ) async throws -> (pki: TestPKI, token: String, collector: ChildProcess, port: Int, url: String) {
        let pki = try await TestPKI(in: dir + "/pki")
        let token = UUID().uuidString
        let (collector, port) = try await startCollector(
            ["--tls-cert", pki.serverCert, "--tls-key", pki.serverKey]
                + (clientCA ? ["--tls-client-ca", pki.caCert] : []),
            token: token
        )
        return (pki, token, collector, port, "https://127.0.0.1:\(port)")
    }

    /// An agent in its own directory (`AgentFixture`, sandbox off) watching DIR/watched and
    /// shipping to `url` with a `collector.tls` body (indented lines).
    func startAgent(_ name: String, url: String, token: String, tls: String?) throws -> ChildProcess {
        let config = try AgentFixture.write(
            in: dir + "/" + name,
            collection: "files:\n  watch: [\(dir)/watched]\n",
            collectorURL: url,
            enrollToken: token,
            collectorTLS: tls,
            extraConfiguration: "sandbox:\n  enabled: false\n"
        )
        return try ChildProcess(BuiltProducts.path("vigild"), ["--config", config])
    }

    /// Starts agent `name` with `tls`, writes DIR/watched/FILE until vigilctl (trusting the test
    /// CA through `trusting`) lists its file event, stops the agent, and expects the collector
    /// at `url` to count it as its one enrolled agent.
    func expectDelivery(
        _ name: String,
        tls: String,
        file: String,
        to url: String,
        token: String,
        trusting: [String: String],
        collector: ChildProcess
    ) async throws {
        let agent = try startAgent(name, url: url, token: token, tls: tls)
        defer { agent.send(SIGTERM) }
        let delivered = try await eventually(timeout: .seconds(60)) {
            try? Data("sent over TLS\n".utf8).write(to: URL(fileURLWithPath: dir + "/watched/" + file))
            let result = try await vigilctl(["events", "--collector", url, "--type", "file", "--json"], trusting)
            return result.status == 0 && result.stdout.contains(file)
        }
        #expect(delivered, "no file event over HTTPS; agent log:\n\(agent.stderr)\ncollector log:\n\(collector.stderr)")
        _ = await agent.stop()
        #expect(try await enrolledAgents(url, trusting) == 1)
    }

    /// `vigilctl ARGS` with the given environment (VIGIL_CA_FILE, ...).
    func vigilctl(
        _ arguments: [String],
        _ environment: [String: String]
    ) async throws -> (
        status: Int32, stdout: String, stderr: String
    ) {
        let child = try ChildProcess(BuiltProducts.path("vigilctl"), arguments, environment: environment)
        let status = await child.wait(timeout: .seconds(60))
        return (status, child.stdout, child.stderr)
    }

    func enrolledAgents(_ url: String, _ environment: [String: String]) async throws -> Int? {
        let result = try await vigilctl(["agents", "--collector", url, "--json"], environment)
        guard result.status == 0,
            let json = try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any],
            let agents = json["agents"] as? [[String: Any]]
        else { return nil }
        return agents.count
    }

    @Test(
        "an agent trusting the collector's CA ships over HTTPS; wrong CA, expired or misnamed certificates are refused with the reason and nothing is sent"
    )
    func serverCertificates() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (pki, token, collector, _, url) = try await startHTTPSCollector()
        defer { collector.send(SIGTERM) }
        let trusting = ["VIGIL_CA_FILE": pki.caCert]
        #expect(collector.stderr.contains("tls=on") || collector.stderr.contains("tls: on"), "\(collector.stderr)")

        // Plain HTTP to an HTTPS collector, and vigilctl without the CA: refused.
        let noCA = try await vigilctl(["agents", "--collector", url], [:])
        #expect(noCA.status != 0, "vigilctl trusted a certificate from an unknown CA: \(noCA.stdout)")

        try await expectDelivery(
            "good",
            tls: "    ca_file: \(pki.caCert)\n",
            file: "over-tls.txt",
            to: url,
            token: token,
            trusting: trusting,
            collector: collector
        )

        // The same collector, agents that must not trust it. Each says why and sends nothing.
        let wrongCA = try startAgent("wrong-ca", url: url, token: token, tls: "    ca_file: \(pki.otherCACert)\n")
        let said = await eventually(timeout: .seconds(60)) {
            wrongCA.stderr.contains("TLS handshake with the collector failed")
        }
        #expect(said, "the agent did not say why it cannot ship: \(wrongCA.stderr)")
        #expect(wrongCA.stderr.lowercased().contains("certificate"), "\(wrongCA.stderr)")
        _ = await wrongCA.stop()
        #expect(try await enrolledAgents(url, trusting) == 1, "an agent that refused the certificate enrolled")

        for (name, cert) in [("expired", pki.expiredCert), ("wrong-name", pki.wrongNameCert)] {
            let (other, otherPort) = try await startCollector(
                ["--tls-cert", cert, "--tls-key", pki.serverKey],
                token: token
            )
            let agent = try startAgent(
                name,
                url: "https://127.0.0.1:\(otherPort)",
                token: token,
                tls: "    ca_file: \(pki.caCert)\n"
            )
            let refused = await eventually(timeout: .seconds(60)) {
                agent.stderr.contains("TLS handshake with the collector failed")
            }
            #expect(refused, "\(name): the agent did not refuse: \(agent.stderr)")
            _ = await agent.stop()
            let stored = try await enrolledAgents(
                "https://127.0.0.1:\(otherPort)",
                ["VIGIL_CA_FILE": pki.otherCACert]
            )
            #expect(stored == nil, "\(name): vigilctl trusted it too")
            other.send(SIGTERM)
            _ = await other.wait(timeout: .seconds(15))
            let rows = try await sqliteRows("\(dir)/collector-\(otherPort).sqlite", "SELECT count(*) FROM agents")
            #expect(rows == [["0"]], "\(name): an agent enrolled through a certificate it must refuse")
        }
    }

    @Test(
        "a pinned collector key: the right pin ships without a CA; a wrong pin, or the pin with a wrong CA, is refused naming both pins and nothing is sent"
    )
    func pinnedKey() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (pki, token, collector, port, url) = try await startHTTPSCollector()
        defer { collector.send(SIGTERM) }
        let trusting = ["VIGIL_CA_FILE": pki.caCert]

        // vigilctl tls-pin prints what the openssl pipeline of the docs prints.
        let printed = try await vigilctl(["tls-pin", pki.serverCert], [:])
        #expect(printed.status == 0, "\(printed.stderr)")
        let pin = printed.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let openssl = try await runCommand(
            "/bin/sh",
            [
                "-c",
                "openssl x509 -in '\(pki.serverCert)' -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64",
            ]
        )
        #expect(pin == "sha256//" + openssl.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "\(openssl)")
        // Another key's pin: the client certificate's.
        let otherPin = try await vigilctl(["tls-pin", pki.clientCert], [:]).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(otherPin.hasPrefix("sha256//") && otherPin != pin)
        // The hex form of the right pin, as the configuration also takes it.
        let hexPin = Data(base64Encoded: String(pin.dropFirst(8)))!.map { String(format: "%02x", $0) }.joined()

        // The right pin and no CA file: the chain is not CA-checked, the pin is the trust.
        try await expectDelivery(
            "pinned",
            tls: "    pin_sha256:\n      - \"\(pin)\"\n",
            file: "pinned.txt",
            to: url,
            token: token,
            trusting: trusting,
            collector: collector
        )

        // A wrong pin (with or without the right CA) and the right pin with a CA that did not sign
        // the certificate: each refused, saying why, and nothing reaches the collector.
        let cases: [(name: String, tls: String, says: [String])] = [
            ("wrong-pin", "    pin_sha256: \"\(otherPin)\"\n", ["not a pinned key", otherPin, pin]),
            (
                "wrong-pin-right-ca", "    ca_file: \(pki.caCert)\n    pin_sha256: [\"\(otherPin)\"]\n",
                ["not a pinned key", otherPin, pin]
            ),
            (
                "pin-wrong-ca", "    ca_file: \(pki.otherCACert)\n    pin_sha256: [\"\(hexPin)\"]\n",
                ["TLS handshake with the collector failed"]
            ),
        ]
        for (name, tls, says) in cases {
            let agent = try startAgent(name, url: url, token: token, tls: tls)
            let refused = await eventually(timeout: .seconds(60)) {
                says.allSatisfy { agent.stderr.contains($0) }
            }
            #expect(refused, "\(name): the agent did not refuse saying \(says): \(agent.stderr)")
            #expect(agent.stderr.contains("error"), "\(name): not logged as an error: \(agent.stderr)")
            _ = await agent.stop()
            #expect(try await enrolledAgents(url, trusting) == 1, "\(name): an agent that refused the key enrolled")
        }
        let rows = try await sqliteRows("\(dir)/collector-\(port).sqlite", "SELECT count(*) FROM agents")
        #expect(rows == [["1"]], "only the agent with the right pin may have reached the collector")
    }

    @Test("with --tls-client-ca only clients with a certificate from that CA are served")
    func mutualTLS() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (pki, token, collector, _, url) = try await startHTTPSCollector(clientCA: true)
        defer { collector.send(SIGTERM) }
        let withCertificate = [
            "VIGIL_CA_FILE": pki.caCert, "VIGIL_CLIENT_CERT": pki.clientCert, "VIGIL_CLIENT_KEY": pki.clientKey,
        ]

        let anonymous = try await vigilctl(["agents", "--collector", url], ["VIGIL_CA_FILE": pki.caCert])
        #expect(anonymous.status != 0, "served a client without a certificate: \(anonymous.stdout)")
        #expect(try await enrolledAgents(url, withCertificate) == 0)

        let withoutCert = try startAgent("no-cert", url: url, token: token, tls: "    ca_file: \(pki.caCert)\n")
        let refused = await eventually(timeout: .seconds(60)) { withoutCert.stderr.contains("cannot reach collector") }
        #expect(refused, "\(withoutCert.stderr)")
        _ = await withoutCert.stop()
        #expect(try await enrolledAgents(url, withCertificate) == 0, "an agent without a certificate enrolled")

        let agent = try startAgent(
            "with-cert",
            url: url,
            token: token,
            tls: "    ca_file: \(pki.caCert)\n    client_cert: \(pki.clientCert)\n    client_key: \(pki.clientKey)\n"
        )
        defer { agent.send(SIGTERM) }
        let enrolled = try await eventually(timeout: .seconds(60)) {
            try await enrolledAgents(url, withCertificate) == 1
        }
        #expect(enrolled, "agent log:\n\(agent.stderr)\ncollector log:\n\(collector.stderr)")
    }

    @Test(
        "a collector whose key does not match its certificate, or whose files are missing, stops at start and names them"
    )
    func badServerFiles() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let pki = try await TestPKI(in: dir + "/pki")
        let mismatched = try await runCommand(
            BuiltProducts.path("vigil-collector"),
            [
                "--listen", "127.0.0.1:0", "--store", "sqlite:\(dir)/c.sqlite", "--tls-cert", pki.serverCert,
                "--tls-key", pki.clientKey,
            ]
        )
        #expect(mismatched.status != 0)
        #expect(
            mismatched.stderr.contains(pki.serverCert) && mismatched.stderr.contains(pki.clientKey),
            "\(mismatched.stderr)"
        )
        let missing = try await runCommand(
            BuiltProducts.path("vigil-collector"),
            [
                "--listen", "127.0.0.1:0", "--store", "sqlite:\(dir)/c.sqlite", "--tls-cert", dir + "/nope.crt",
                "--tls-key", pki.serverKey,
            ]
        )
        #expect(missing.status != 0)
        #expect(missing.stderr.contains("--tls-cert") && missing.stderr.contains("nope.crt"), "\(missing.stderr)")
        let halfMutual = try await runCommand(
            BuiltProducts.path("vigil-collector"),
            ["--listen", "127.0.0.1:0", "--store", "sqlite:\(dir)/c.sqlite", "--tls-client-ca", pki.caCert]
        )
        #expect(halfMutual.status != 0 && halfMutual.stderr.contains("--tls-client-ca"), "\(halfMutual.stderr)")
    }
}
