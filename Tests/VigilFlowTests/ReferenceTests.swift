import Foundation
import Testing
import VigilCore
import VigilSensors
import VigilTestSupport

/// `vigilctl flows` against the Zeek and suricata-verify reference records of the shared
/// corpus. Every difference must be listed, with its reason, in
/// `Fixtures/known-differences.json`; a listed difference that no longer occurs fails too,
/// so the list stays true.
@Suite("Reference captures")
struct ReferenceTests {
    @Test("the reference corpus is present in CI")
    func corpusPresentInCI() {
        #expect(Corpus.isPresent || !TestEnvironment.isCI, "no corpus at \(Corpus.directory): CI must have it")
    }

    @Test(
        "flows match Zeek and Suricata, or the difference is documented",
        .enabled(if: Corpus.isPresent, "the reference corpus is not at ../shared/corpora/pcaps")
    )
    func flowsMatchReferences() throws {
        let known = try JSONDecoder().decode(
            KnownDifferences.self,
            from: Data(contentsOf: URL(fileURLWithPath: Corpus.fixtures + "/known-differences.json"))
        )
        for entry in known.differences {
            #expect(!entry.reason.isEmpty, "no reason given for \(entry.record) \(entry.field)")
        }
        var unsupported: Set<String> = []
        var flowsByCapture: [String: [FlowEvent]] = [:]
        for capture in Corpus.captures() {
            guard let linkType = Corpus.linkType(capture), LinkType.isSupported(linkType) else {
                unsupported.insert(capture)
                continue
            }
            flowsByCapture[capture] = try Corpus.flows(capture)
        }
        #expect(unsupported == Set(known.unsupportedLinkTypes.map(\.pcap)), "captures skipped for their link type")
        var actual: [Difference] = []
        var compared = 0
        let records = try Corpus.expectedRecords()
        var sameTuple: [String: Int] = [:]
        for expected in records where flowsByCapture[expected.pcap] != nil {
            sameTuple[ReferenceComparison(expected: expected, flows: []).recordName, default: 0] += 1
        }
        var seen: [String: Int] = [:]
        for expected in records {
            guard let flows = flowsByCapture[expected.pcap] else { continue }
            var comparison = ReferenceComparison(expected: expected, flows: flows)
            let name = comparison.recordName
            comparison.occurrence = seen[name, default: 0]
            comparison.occurrences = sameTuple[name, default: 1]
            comparison.communityIDSeed = Corpus.suricataCommunityIDSeed(expected)
            seen[name, default: 0] += 1
            compared += 1
            actual += comparison.differences()
        }
        #expect(compared > 100)
        let documented = Set(known.differences.map(\.difference))
        let unexplained = Set(actual).subtracting(documented).sorted()
        let stale = documented.subtracting(actual).sorted()
        if let out = ProcessInfo.processInfo.environment["VIGIL_FLOW_DIFFERENCES_OUT"] {
            let reasons = Dictionary(
                known.differences.map { ($0.difference, $0.reason) },
                uniquingKeysWith: { a, _ in a }
            )
            let entries = Set(actual).sorted().map {
                KnownDifference(
                    record: $0.record,
                    field: $0.field,
                    ours: $0.ours,
                    expected: $0.expected,
                    reason: reasons[$0] ?? ""
                )
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            try encoder.encode(KnownDifferences(unsupportedLinkTypes: known.unsupportedLinkTypes, differences: entries))
                .write(to: URL(fileURLWithPath: out))
        }
        #expect(
            unexplained.isEmpty,
            "unexplained differences:\n\(unexplained.map { "\($0.record) \($0.field): ours \($0.ours), expected \($0.expected)" }.joined(separator: "\n"))"
        )
        #expect(
            stale.isEmpty,
            "documented differences that no longer occur:\n\(stale.map { "\($0.record) \($0.field)" }.joined(separator: "\n"))"
        )
    }
}
