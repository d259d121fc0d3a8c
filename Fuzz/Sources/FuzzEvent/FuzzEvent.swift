import FuzzSupport
import VigilCore
import VigilWire

/// One serialized `vigil.v1.Event`, as found inside a batch body and in the agent's spool.
///
/// Invariants: the direct reader and SwiftProtobuf agree on every input (the same event, or both
/// refuse it); an event that decodes encodes again, and that encoding decodes to the same event
/// (what the collector stores is what the agent meant).
enum EventTarget: FuzzTarget {
    static func seeds() throws -> [[UInt8]] {
        try SampleEvents.all.map { try EventCodec.encode($0) }
    }

    static func test(_ input: [UInt8]) {
        let direct = try? EventCodec.decode(input)
        let reference = try? EventCodec.decodeWithSwiftProtobuf(input)
        FuzzCheck.require(
            direct == reference,
            "the direct reader and SwiftProtobuf disagree: \(String(describing: direct)) vs \(String(describing: reference))"
        )
        guard let event = direct else { return }
        guard let bytes = try? EventCodec.encode(event) else {
            FuzzCheck.require(false, "a decoded event does not encode: \(event)")
            return
        }
        let again = try? EventCodec.decode(bytes)
        FuzzCheck.require(
            again == event,
            "event changes through encode/decode: \(event) vs \(String(describing: again))"
        )
    }
}

@_cdecl("FuzzEvent_main")
func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    FuzzDriver.main(EventTarget.self, argc, argv)
}
