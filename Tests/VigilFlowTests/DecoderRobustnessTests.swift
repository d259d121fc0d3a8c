import Testing
import VigilLinux
import VigilSensors
import VigilTestSupport

/// The decoder on hostile input: every truncation of every corpus packet, and random bytes
/// under every link type, decode or count a drop reason, and never trap.
@Suite("Packet decoder robustness")
struct DecoderRobustnessTests {
    @Test(
        "every prefix of every corpus packet is decoded or counted",
        .enabled(if: Corpus.isPresent, "the reference corpus is not at ../shared/corpora/pcaps")
    )
    func truncatedCorpusPackets() throws {
        var decoder = PacketDecoder()
        var packet = DecodedPacket()
        var offered: UInt64 = 0
        for capture in Corpus.captures() {
            let file = try PcapFile(path: Corpus.directory + "/" + capture)
            try file.forEachPacket { captured in
                let bytes = captured.bytes
                for length in 0...min(bytes.count, 200) {
                    _ = decoder.decode(
                        UnsafeRawBufferPointer(rebasing: bytes[0..<length]),
                        linkType: captured.linkType,
                        into: &packet
                    )
                    offered += 1
                }
            }
        }
        let stats = decoder.statistics
        #expect(stats.packets == offered)
        #expect(stats.decoded + stats.dropped.reduce(0, +) == offered)
        #expect(
            stats[.truncatedIPHeader] > 0 && stats[.truncatedTransportHeader] > 0 && stats[.truncatedLinkHeader] > 0
        )
    }

    @Test("random frames under every link type never trap and are all accounted for")
    func randomFrames() {
        var generator = SplitMix64(seed: 0x5EED)
        var decoder = PacketDecoder()
        var packet = DecodedPacket()
        let linkTypes: [Int32] = [0, 1, 9, 10, 12, 14, 50, 51, 101, 108, 113, 228, 229, 276, 127]
        var offered: UInt64 = 0
        var buffer = [UInt8](repeating: 0, count: 256)
        for round in 0..<20_000 {
            let length = Int(generator.next() % 256)
            for i in 0..<length { buffer[i] = UInt8(truncatingIfNeeded: generator.next()) }
            // Make IP likely so the deeper layers get exercised too.
            if length > 20, round % 2 == 0 {
                buffer[14] = round % 4 == 0 ? 0x45 : 0x60
                buffer[12] = 0x08
                buffer[13] = 0
            }
            for linkType in linkTypes {
                buffer.withUnsafeBytes { raw in
                    _ = decoder.decode(
                        UnsafeRawBufferPointer(rebasing: raw[0..<length]),
                        linkType: linkType,
                        into: &packet
                    )
                }
                offered += 1
            }
        }
        let stats = decoder.statistics
        #expect(stats.decoded + stats.dropped.reduce(0, +) == offered)
        #expect(stats[.unsupportedLinkType] == 20_000)
    }
}
