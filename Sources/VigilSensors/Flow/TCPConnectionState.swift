/// A TCP endpoint's state, after Zeek's `TCP_ENDPOINT_*`.
enum TCPEndpointState: UInt8, Sendable {
    case inactive, synSent, synAckSent, partial, established, closed, reset
}

/// Tracks both endpoints of a TCP connection closely enough to give Zeek's `conn_state`.
struct TCPConnectionState: Sendable {
    var originator = TCPEndpointState.inactive
    var responder = TCPEndpointState.inactive
    /// The originator's first packet was a SYN and it sent nothing but SYNs before a RST
    /// (for RSTOS0).
    var originatorOnlySYNs = true
    var originatorStartedWithSYN = false
    var responderSentSYNAck = false
    var originatorPayload = false
    var responderPayload = false

    /// Updates the state with a packet from the originator (`fromOriginator`) or responder.
    mutating func update(flags: UInt8, payload: UInt32, fromOriginator: Bool, isFirst: Bool) {
        var endpoint = fromOriginator ? originator : responder
        var peer = fromOriginator ? responder : originator
        let syn = flags & TCPFlag.syn != 0
        let ack = flags & TCPFlag.ack != 0
        let fin = flags & TCPFlag.fin != 0
        let rst = flags & TCPFlag.rst != 0
        if fromOriginator {
            if isFirst { originatorStartedWithSYN = syn && !ack }
            if !(syn && !ack) && !rst { originatorOnlySYNs = false }
            if payload > 0 { originatorPayload = true }
        } else {
            if syn && ack { responderSentSYNAck = true }
            if payload > 0 { responderPayload = true }
        }
        if syn {
            if ack {
                if peer == .synSent {
                    peer = .established
                } else if peer == .inactive {
                    peer = .partial
                }
                if endpoint != .reset && endpoint != .closed { endpoint = .synAckSent }
            } else if endpoint == .inactive || endpoint == .synSent {
                endpoint = .synSent
            }
        }
        if fin && endpoint != .reset {
            endpoint = .closed
        }
        if rst {
            endpoint = .reset
        }
        if !syn && !fin && !rst {
            switch endpoint {
            case .inactive:
                if ack || payload > 0 { endpoint = .partial }
            case .synSent, .synAckSent:
                if peer != .inactive { endpoint = .established }
                if peer == .synAckSent { peer = .established }
            default:
                break
            }
        }
        if fromOriginator {
            originator = endpoint
            responder = peer
        } else {
            responder = endpoint
            originator = peer
        }
    }

    /// Swaps the roles (the originator was guessed wrong).
    mutating func flip() {
        swap(&originator, &responder)
        swap(&originatorPayload, &responderPayload)
        originatorOnlySYNs = false
        originatorStartedWithSYN = false
        responderSentSYNAck = false
    }

    /// Zeek's `conn_state` letters (`base/protocols/conn/main.zeek`).
    var summary: String {
        let os = originator
        let rs = responder
        let originatorInactive = os == .inactive || os == .partial
        let responderInactive = rs == .inactive || rs == .partial
        if rs == .reset {
            if os == .synSent || os == .synAckSent || (os == .reset && !originatorPayload && !responderPayload) {
                return "REJ"
            }
            return originatorInactive ? "RSTRH" : "RSTR"
        }
        if os == .reset {
            if responderInactive {
                return originatorStartedWithSYN && originatorOnlySYNs && !responderSentSYNAck ? "RSTOS0" : "OTH"
            }
            return "RSTO"
        }
        if rs == .closed && os == .closed { return "SF" }
        if os == .closed { return responderInactive ? "SH" : "S2" }
        if rs == .closed { return originatorInactive ? "SHR" : "S3" }
        if os == .synSent && rs == .inactive { return "S0" }
        if os == .established && rs == .established { return "S1" }
        return "OTH"
    }
}
