import VigilCore
import VigilSensors

extension FlowSensor {
    /// Stops the sensor and returns the flows and health events it reported, in order.
    func stopAndCollect() async -> (flows: [FlowEvent], health: [AgentHealth]) {
        stop()
        var flows: [FlowEvent] = []
        var health: [AgentHealth] = []
        for await event in events {
            switch event.payload {
            case .flow(let flow): flows.append(flow)
            case .health(let h): health.append(h)
            default: break
            }
        }
        return (flows, health)
    }
}
