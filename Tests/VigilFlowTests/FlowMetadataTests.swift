import Foundation
import Testing
import VigilCore
import VigilLinux
import VigilSensors
import VigilTestSupport

/// The DNS and TLS ClientHello parsers on real corpus packets and crafted hostile ones, the flow
/// table's metadata hook, `vigilctl flows --json` on captures with DNS and TLS, and the spliced
/// BPF program that keeps DNS and ClientHello packets longer. The expected names and addresses
/// come from tcpdump (`tcpdump -# -nr FILE` and `tcpdump -# -nr FILE -X`), not from this code.
@Suite("Flow metadata (DNS, TLS SNI)")
struct FlowMetadataTests {
    static let wikipedia = "zeek/traces/wikipedia.pcap"
    static let ipv6TLS = "suricata-verify/tests/community-id-ipv6/input.pcap"

    /// The captured frame `number` (1-based, as `tcpdump -#` counts) of a corpus capture, with
    /// the decoder's view of it.
    static func frame(_ relative: String, number: Int) throws -> (bytes: [UInt8], packet: DecodedPacket, link: Int32) {
        let file = try PcapFile(path: Corpus.directory + "/" + relative)
        var index = 0
        var found: ([UInt8], DecodedPacket, Int32)?
        var decoder = PacketDecoder()
        _ = try file.forEachPacket { captured in
            index += 1
            guard index == number else { return }
            var packet = DecodedPacket()
            _ = decoder.decode(captured.bytes, linkType: captured.linkType, into: &packet)
            found = (Array(captured.bytes), packet, captured.linkType)
        }
        let (bytes, packet, link) = try #require(found, "\(relative) has no frame \(number)")
        return (bytes, packet, link)
    }

    /// The transport payload of frame `number`.
    static func payload(_ relative: String, number: Int) throws -> [UInt8] {
        let (bytes, packet, _) = try frame(relative, number: number)
        let start = Int(packet.payloadOffset)
        try #require(start > 0 && start <= bytes.count)
        return Array(bytes[start..<min(bytes.count, start + Int(packet.payloadBytes))])
    }

    // MARK: - DNS

    @Test(
        "a real DNS query and response: the question name, and the answer section's A record only",
        .enabled(if: Corpus.isPresent, "the reference corpus is not at ../shared/corpora/pcaps")
    )
    func dnsFromCorpus() throws {
        // tcpdump: 20 "141.142.220.118.40526 > 141.142.2.2.53: 26096+ A? upload.wikimedia.org."
        //          21 "26096 2/3/3 CNAME upload.pmtpa.wikimedia.org., A 208.80.152.3"
        let query = try Self.payload(Self.wikipedia, number: 20)
        let q = try #require(query.withUnsafeBytes { DNSMessage.parse($0) })
        #expect(!q.isResponse && q.queryName == "upload.wikimedia.org" && q.answers.isEmpty)

        let response = try Self.payload(Self.wikipedia, number: 21)
        let r = try #require(response.withUnsafeBytes { DNSMessage.parse($0) })
        #expect(r.isResponse && r.queryName == "upload.wikimedia.org")
        // The 3 additional records (name servers' addresses) are not answers.
        #expect(r.answers.map(\.text) == ["208.80.152.3"])
        // Without the name (already known), the answers still come.
        let answersOnly = try #require(response.withUnsafeBytes { DNSMessage.parse($0, decodeName: false) })
        #expect(answersOnly.queryName == nil && answersOnly.answers.map(\.text) == ["208.80.152.3"])

        // Every prefix: never traps; the name comes once the question is complete, the
        // address once its record is.
        for length in 0...response.count {
            let m = response.withUnsafeBytes { DNSMessage.parse(UnsafeRawBufferPointer(rebasing: $0[0..<length])) }
            if let m, let name = m.queryName { #expect(name == "upload.wikimedia.org") }
            if length == response.count { #expect(m?.answers.count == 1) }
            if length < 12 { #expect(m == nil) }
        }
    }

    /// A DNS header (id 1, flags, counts) followed by `body`.
    static func dns(flags: UInt16 = 0x8180, questions: UInt16 = 1, answers: UInt16 = 0, _ body: [UInt8]) -> [UInt8] {
        func be(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(v & 0xFF)] }
        return [0, 1] + be(flags) + be(questions) + be(answers) + [0, 0, 0, 0] + body
    }

    static func parse(_ bytes: [UInt8]) -> DNSMessage? {
        bytes.withUnsafeBytes { DNSMessage.parse($0) }
    }

    @Test("compression pointers: followed backwards, refused when they loop or point forwards")
    func dnsPointers() {
        // Question "www.example.com" A IN; answer named by a pointer to it (offset 12), AAAA.
        let question: [UInt8] = [3] + Array("www".utf8) + [7] + Array("example".utf8) + [3] + Array("com".utf8) + [0]
        let aaaa: [UInt8] =
            [0xC0, 12, 0, 28, 0, 1, 0, 0, 0, 60, 0, 16] + [0x20, 0x01, 0x0D, 0xB8] + Array(repeating: 0, count: 11) + [
                1
            ]
        let a: [UInt8] = [0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 7]
        let good = Self.dns(answers: 3, question + [0, 1, 0, 1] + aaaa + a + a)
        let message = Self.parse(good)
        #expect(message?.queryName == "www.example.com")
        #expect(message?.answers.map(\.text) == ["2001:db8::1", "192.0.2.7"], "duplicates kept once")

        // A question name that is a pointer to itself, or forwards, or a chain that loops.
        #expect(Self.parse(Self.dns([0xC0, 12, 0, 1, 0, 1])) == nil)
        #expect(Self.parse(Self.dns([0xC0, 20, 0, 1, 0, 1, 0, 0, 3, 0x61, 0x62, 0x63, 0])) == nil)
        #expect(Self.parse(Self.dns([1, 0x61, 0xC0, 12, 0, 1, 0, 1])) == nil)
        // A name in the question built backwards from a name earlier in the message is fine:
        // second question "a" + pointer to "example.com" in the first.
        let two = Self.dns(questions: 2, question + [0, 1, 0, 1] + [1, 0x61, 0xC0, 16, 0, 1, 0, 1])
        #expect(Self.parse(two)?.queryName == "www.example.com")
        // The first question can only point into the header (all that precedes it): read as
        // labels, harmlessly.
        for target in UInt8(0)..<12 { _ = Self.parse(Self.dns([0xC0, target, 0, 1, 0, 1])) }
    }

    @Test("malformed names: truncated, reserved label types, too long; odd bytes escaped")
    func dnsMalformed() {
        #expect(Self.parse(Self.dns([3, 0x61, 0x62])) == nil, "label runs past the end")
        #expect(Self.parse(Self.dns([0x40, 0x61, 0])) == nil, "extended label type")
        #expect(Self.parse(Self.dns([0x80, 0x61, 0])) == nil, "reserved label type")
        #expect(Self.parse(Self.dns(flags: 0x2800, [0, 0, 1, 0, 1])) == nil, "opcode UPDATE")
        #expect(Self.parse(Self.dns(questions: 17, [0, 0, 1, 0, 1])) == nil)
        #expect(Self.parse([0, 1, 0, 0]) == nil)
        // 5 labels of 63 bytes: 320 bytes of name, over 255.
        let label: [UInt8] = [63] + Array(repeating: 0x61, count: 63)
        let long: [UInt8] = Array(repeating: label, count: 5).flatMap { $0 } + [0]
        #expect(Self.parse(Self.dns(long + [0, 1, 0, 1])) == nil)
        // Exactly 255 bytes on the wire is allowed.
        let last: [UInt8] = [61] + Array(repeating: 0x62, count: 61) + [0]
        let max: [UInt8] = Array(repeating: label, count: 3).flatMap { $0 } + last
        #expect(max.count == 255)
        #expect(Self.parse(Self.dns(max + [0, 1, 0, 1]))?.queryName?.utf8.count == 3 * 64 + 61)
        // The root, and bytes that need escaping.
        #expect(Self.parse(Self.dns([0, 0, 2, 0, 1]))?.queryName == ".")
        #expect(Self.parse(Self.dns([3, 0x61, 0x2E, 0x00, 0, 0, 1, 0, 1]))?.queryName == "a\\x2e\\x00")
        // An answer cut short keeps the answers before it.
        let q: [UInt8] = [1, 0x61, 0, 0, 1, 0, 1]
        let a: [UInt8] = [0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 1]
        let cut = Self.dns(answers: 2, q + a + a.prefix(13))
        #expect(Self.parse(cut)?.answers.map(\.text) == ["10.0.0.1"])
        // An A record with a wrong length is not an address.
        let bad: [UInt8] = [0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 5, 10, 0, 0, 1, 9]
        #expect(Self.parse(Self.dns(answers: 1, q + bad))?.answers.isEmpty == true)
    }

    @Test("random DNS messages never trap")
    func dnsRandom() {
        var generator = SplitMix64(seed: 0xD45)
        var buffer = [UInt8](repeating: 0, count: 300)
        var parsed = 0
        for round in 0..<50_000 {
            let length = Int(generator.next() % 300)
            for i in 0..<length { buffer[i] = UInt8(truncatingIfNeeded: generator.next()) }
            if length > 12 {
                buffer[2] = round % 2 == 0 ? 0x81 : 0x01  // opcode QUERY, response or query
                buffer[4] = 0
                buffer[5] = UInt8(round % 3)
                buffer[6] = 0
                // Labels and pointers are likelier with small bytes.
                for i in 12..<length where generator.next() % 3 == 0 {
                    buffer[i] = UInt8(generator.next() % 16) | (round % 5 == 0 ? 0xC0 : 0)
                }
            }
            if buffer.withUnsafeBytes({ DNSMessage.parse(UnsafeRawBufferPointer(rebasing: $0[0..<length])) }) != nil {
                parsed += 1
            }
        }
        #expect(parsed > 0)
    }

    // MARK: - TLS

    @Test(
        "real ClientHellos give their server names; a hello cut before the name's end gives none",
        .enabled(if: Corpus.isPresent, "the reference corpus is not at ../shared/corpora/pcaps")
    )
    func tlsFromCorpus() throws {
        // tcpdump -X: frame 4 (to 2001:4860:4860::8888.443, 280 bytes) names "dns.google",
        // frame 38 (to 2607:f8b0:400a:800::200e.443, 517 bytes) "ipv6.google.com".
        for (number, name) in [(4, "dns.google"), (38, "ipv6.google.com")] {
            let hello = try Self.payload(Self.ipv6TLS, number: number)
            #expect(hello.withUnsafeBytes { TLSClientHello.serverName(in: $0) } == name)
            // Where the name ends in the hello (found by its bytes, not by the parser).
            let nameEnd = try #require(Self.find(Array(name.utf8), in: hello)) + name.utf8.count
            for length in 0...hello.count {
                let found = hello.withUnsafeBytes {
                    TLSClientHello.serverName(in: UnsafeRawBufferPointer(rebasing: $0[0..<length]))
                }
                #expect(found == (length >= nameEnd ? name : nil), "\(name) cut at \(length)")
            }
        }
        // Not a ClientHello: the server's answer, an HTTP request, nothing.
        #expect(Array("GET / HTTP/1.1\r\n".utf8).withUnsafeBytes { TLSClientHello.serverName(in: $0) } == nil)
        #expect([UInt8]().withUnsafeBytes { TLSClientHello.serverName(in: $0) } == nil)
    }

    static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard needle.count <= haystack.count else { return nil }
        return (0...(haystack.count - needle.count)).first { Array(haystack[$0..<($0 + needle.count)]) == needle }
    }

    /// A ClientHello record around `extensions`.
    static func hello(extensions: [UInt8], sessionID: Int = 32, suites: Int = 4) -> [UInt8] {
        func be16(_ v: Int) -> [UInt8] { [UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
        var body: [UInt8] = [3, 3] + Array(repeating: 7, count: 32)
        body += [UInt8(sessionID)] + Array(repeating: 1, count: sessionID)
        body += be16(suites) + Array(repeating: 0x13, count: suites)
        body += [1, 0]
        body += be16(extensions.count) + extensions
        let handshake: [UInt8] = [1, 0] + be16(body.count) + body
        return [22, 3, 1] + be16(handshake.count) + handshake
    }

    static func sni(_ name: [UInt8], type: UInt8 = 0) -> [UInt8] {
        let entry: [UInt8] = [type, UInt8(name.count >> 8), UInt8(name.count & 0xFF)] + name
        let list: [UInt8] = [UInt8(entry.count >> 8), UInt8(entry.count & 0xFF)] + entry
        return [0, 0, UInt8(list.count >> 8), UInt8(list.count & 0xFF)] + list
    }

    @Test("crafted ClientHellos: lengths that lie, other extensions first, odd names")
    func tlsCrafted() {
        func name(_ bytes: [UInt8]) -> String? { bytes.withUnsafeBytes { TLSClientHello.serverName(in: $0) } }
        let grease: [UInt8] = [0x0A, 0x0A, 0, 2, 0, 0]
        #expect(name(Self.hello(extensions: grease + Self.sni(Array("a.test".utf8)))) == "a.test")
        #expect(name(Self.hello(extensions: grease)) == nil)
        #expect(name(Self.hello(extensions: Self.sni(Array("x".utf8), type: 1))) == nil, "not host_name")
        #expect(name(Self.hello(extensions: Self.sni([0x61, 0x0A, 0x62]))) == "a\\x0ab")
        #expect(name(Self.hello(extensions: Self.sni(Array(repeating: 0x61, count: 256)))) == nil, "over 255")
        // An extension whose length runs past the extensions block.
        var lying = Self.hello(extensions: [0x0A, 0x0A, 0xFF, 0xFF] + Self.sni(Array("b.test".utf8)))
        #expect(name(lying) == nil)
        // A record length shorter than the hello: the name past it is not read.
        lying = Self.hello(extensions: Self.sni(Array("c.test".utf8)))
        lying[3] = 0
        lying[4] = 50
        #expect(name(lying) == nil)
        // Session id length over what is there.
        var session = Self.hello(extensions: Self.sni(Array("d.test".utf8)))
        session[43] = 0xFF
        #expect(name(session) == nil)
        // A server hello (handshake type 2) and an alert record.
        var server = Self.hello(extensions: Self.sni(Array("e.test".utf8)))
        server[5] = 2
        #expect(name(server) == nil)
        var generator = SplitMix64(seed: 0x7157)
        let base = Self.hello(extensions: grease + Self.sni(Array("f.test".utf8)))
        for _ in 0..<20_000 {
            var mutated = base
            for _ in 0..<3 {
                mutated[Int(generator.next() % UInt64(mutated.count))] = UInt8(truncatingIfNeeded: generator.next())
            }
            _ = name(mutated)
        }
    }

    // MARK: - Flow table and vigilctl

    @Test(
        "vigilctl flows --json reports the DNS query, answers and TLS server name of specific flows",
        .enabled(if: Corpus.isPresent, "the reference corpus is not at ../shared/corpora/pcaps")
    )
    func flowsCommand() async throws {
        let vigilctl = BuiltProducts.path("vigilctl")
        func flows(_ capture: String, _ extra: [String] = []) async throws -> [[String: Any]] {
            let result = try await runCommand(
                vigilctl,
                ["flows", "--pcap", Corpus.directory + "/" + capture, "--json"] + extra
            )
            #expect(result.status == 0, "\(result.stderr)")
            return try result.stdout.split(separator: "\n").map {
                try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] ?? [:]
            }
        }
        let dns = try await flows(Self.wikipedia)
        let a = try #require(dns.first { $0["orig_p"] as? Int == 40526 && $0["resp_p"] as? Int == 53 })
        #expect(a["dns_query"] as? String == "upload.wikimedia.org")
        #expect(a["dns_answers"] as? [String] == ["208.80.152.3"])
        #expect(a["server_name"] == nil)
        // tcpdump 16/17: "AAAA? upload.wikimedia.org." answered "0/1/0": a query, no answers.
        let aaaa = try #require(dns.first { $0["orig_p"] as? Int == 43927 })
        #expect(aaaa["dns_query"] as? String == "upload.wikimedia.org" && aaaa["dns_answers"] == nil)
        // tcpdump 48/49: "A? meta.wikimedia.org." → 3/3/3 "... A 208.80.152.2".
        let meta = try #require(dns.first { $0["orig_p"] as? Int == 55092 })
        #expect(
            meta["dns_query"] as? String == "meta.wikimedia.org" && meta["dns_answers"] as? [String] == ["208.80.152.2"]
        )
        // A flow without DNS or TLS has none of the keys.
        let plain = try #require(dns.first { $0["proto"] as? String == "tcp" })
        #expect(plain["dns_query"] == nil && plain["dns_answers"] == nil && plain["server_name"] == nil)
        #expect(dns.filter { $0["dns_query"] != nil }.count == 14, "tcpdump counts 14 DNS exchanges")

        let tls = try await flows(Self.ipv6TLS)
        let google = try #require(tls.first { $0["orig_p"] as? Int == 33892 && $0["resp_p"] as? Int == 443 })
        #expect(google["server_name"] as? String == "dns.google")
        let ipv6 = try #require(tls.first { $0["orig_p"] as? Int == 60202 })
        #expect(ipv6["server_name"] as? String == "ipv6.google.com")
        #expect(tls.filter { $0["server_name"] != nil }.count == 2)

        let off = try await flows(Self.ipv6TLS, ["--no-metadata"])
        #expect(off.count == tls.count && off.allSatisfy { $0["server_name"] == nil })
    }

    @Test("the flow table keeps the first query name and at most 8 distinct answers")
    func tableKeepsMetadata() throws {
        // Ethernet + IPv4 + UDP from 10.0.0.1:5000 (or back) around a DNS payload.
        func frame(_ dns: [UInt8], response: Bool) -> [UInt8] {
            let udpLength = 8 + dns.count
            let total = 20 + udpLength
            var f: [UInt8] = Array(repeating: 0, count: 12) + [0x08, 0x00]
            f += [0x45, 0, UInt8(total >> 8), UInt8(total & 0xFF), 0, 0, 0, 0, 64, 17, 0, 0]
            f += response ? [10, 0, 0, 2, 10, 0, 0, 1] : [10, 0, 0, 1, 10, 0, 0, 2]
            f += response ? [0, 53, 0x13, 0x88] : [0x13, 0x88, 0, 53]
            f += [UInt8(udpLength >> 8), UInt8(udpLength & 0xFF), 0, 0] + dns
            return f
        }
        let question: [UInt8] = [1, 0x61, 0, 0, 1, 0, 1]
        func answers(_ range: ClosedRange<UInt8>) -> [UInt8] {
            range.flatMap { [0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 9, 9, $0] }
        }
        let frames = [
            frame(Self.dns(flags: 0x0100, answers: 0, question), response: false),
            frame(Self.dns(answers: 6, question + answers(1...6)), response: true),
            frame(Self.dns(flags: 0x0100, answers: 0, [1, 0x62, 0, 0, 1, 0, 1]), response: false),
            frame(Self.dns(answers: 6, [1, 0x62, 0, 0, 1, 0, 1] + answers(4...9)), response: true),
        ]
        for metadata in [true, false] {
            var decoder = PacketDecoder()
            var table = FlowTable(configuration: FlowTableConfiguration(metadata: metadata))
            var packet = DecodedPacket()
            for (i, f) in frames.enumerated() {
                f.withUnsafeBytes { raw in
                    #expect(decoder.decode(raw, linkType: LinkType.ethernet, into: &packet))
                    table.add(packet, at: Int64(i) * 1_000_000, frame: raw)
                }
            }
            table.flush()
            let flows = table.takeCompleted().map(\.event)
            #expect(flows.count == 1)
            if metadata {
                #expect(flows.first?.dnsQuery == "a")
                #expect(flows.first?.dnsAnswers == (1...8).map { "10.9.9.\($0)" })
            } else {
                #expect(flows.first?.dnsQuery == nil && flows.first?.dnsAnswers == nil)
            }
        }
    }

    // MARK: - Spliced BPF program

    @Test(
        "the spliced filter keeps exactly the base filter's packets; DNS and ClientHellos longer",
        .enabled(if: Corpus.isPresent, "the reference corpus is not at ../shared/corpora/pcaps")
    )
    func splicedProgram() throws {
        let large = FlowSensor.metadataSnapshot
        var programs: [Int32: (base: [BPFInstruction], spliced: [BPFInstruction])] = [:]
        var checked = 0
        var long: [String] = []
        for capture in Corpus.captures() {
            guard let file = try? PcapFile(path: Corpus.directory + "/" + capture) else { continue }
            let link = file.linkType
            if programs[link] == nil {
                guard let base = try? PcapCapture.compile("ip or ip6", linkType: link, snapshotLength: 128) else {
                    continue
                }
                let extra = try PcapCapture.compile(large.filter, linkType: link, snapshotLength: large.length)
                let spliced = try #require(
                    PcapCapture.splice(base, baseSnapshot: 128, large: extra, largeSnapshot: large.length)
                )
                programs[link] = (base, spliced)
            }
            let (base, spliced) = programs[link]!
            var index = 0
            _ = try? file.forEachPacket { captured in
                index += 1
                let accepted = PcapCapture.run(base, on: captured.bytes, wireLength: captured.wireLength)
                let kept = PcapCapture.run(spliced, on: captured.bytes, wireLength: captured.wireLength)
                // A capture cut short by its own snap length is not what the kernel would see
                // (loads past the cut fail): only whole packets are compared.
                if captured.bytes.count == captured.wireLength {
                    #expect((accepted > 0) == (kept > 0), "\(capture) #\(index): base \(accepted), spliced \(kept)")
                    checked += 1
                }
                #expect(kept == 0 || kept == 128 || kept == 2048)
                if kept == 2048 { long.append("\(capture)#\(index)") }
            }
        }
        #expect(checked > 1000)
        // What tcpdump picks out: the DNS packets and the two ClientHellos, among others.
        #expect(long.contains("\(Self.wikipedia)#20") && long.contains("\(Self.wikipedia)#21"))
        #expect(long.contains("\(Self.ipv6TLS)#4") && long.contains("\(Self.ipv6TLS)#38"))
        #expect(!long.contains("\(Self.ipv6TLS)#3"), "a bare ACK stays short")
        // A base filter that rejects: the splice rejects too.
        let link = LinkType.ethernet
        let none = try PcapCapture.compile("icmp", linkType: link, snapshotLength: 128)
        let extra = try PcapCapture.compile(large.filter, linkType: link, snapshotLength: large.length)
        let spliced = try #require(PcapCapture.splice(none, baseSnapshot: 128, large: extra, largeSnapshot: 2048))
        let dns = try Self.frame(Self.wikipedia, number: 21).bytes
        #expect(dns.withUnsafeBytes { PcapCapture.run(spliced, on: $0, wireLength: $0.count) } == 0)
        let tooLong = Array(repeating: none[0], count: 4096 - extra.count + 1)
        #expect(PcapCapture.splice(tooLong, baseSnapshot: 1, large: extra, largeSnapshot: 2).map(\.count) == nil)
        #expect(
            PcapCapture.splice(Array(tooLong.dropLast()), baseSnapshot: 1, large: extra, largeSnapshot: 2)?.count
                == 4096
        )
    }
}
