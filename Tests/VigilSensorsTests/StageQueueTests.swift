import Testing
import VigilCore

@testable import VigilSensors

@Suite("File sensor stage queue")
struct StageQueueTests {
    static func item(_ name: String) -> StageItem {
        .file(FileEvent(action: .create, targetFilename: name), Timestamp(nanosecondsSinceEpoch: 1), nil)
    }

    static func names(_ items: [StageItem]) -> [String] {
        items.compactMap { if case .file(let event, _, _) = $0 { event.targetFilename } else { nil } }
    }

    @Test("a full queue drops by arrival, except what keep wants, up to an eighth past the bound")
    func keepsWhatRulesWant() throws {
        let queue = try StageQueue(capacity: 16)
        let keep: (StageItem) -> Bool = { Self.names([$0]).first?.hasSuffix("evil.sh") == true }
        var batch = (0..<16).map { Self.item("/w/f\($0)") }
        #expect(queue.push(&batch, keep: keep) == 0)
        batch = ["/w/a", "/w/d0/evil.sh", "/w/b", "/w/d1/evil.sh"].map(Self.item)
        #expect(queue.push(&batch, keep: keep) == 2)
        #expect(queue.backlog == 18)
        // Past the reserve (16 + 2), even wanted items are dropped; health always gets in.
        batch = [
            Self.item("/w/d2/evil.sh"),
            .health(AgentHealth(kind: "k", message: "m"), Timestamp(nanosecondsSinceEpoch: 2)),
        ]
        #expect(queue.push(&batch, keep: keep) == 1)
        #expect(queue.backlog == 19)
        // Without keep, nothing past the bound.
        var taken: [StageItem] = []
        _ = queue.take(into: &taken)
        #expect(Self.names(taken) == (0..<16).map { "/w/f\($0)" } + ["/w/d0/evil.sh", "/w/d1/evil.sh"])
        queue.markDone(taken.count)
        batch = (0..<17).map { Self.item("/w/g\($0)") }
        #expect(queue.push(&batch) == 1)
    }
}
