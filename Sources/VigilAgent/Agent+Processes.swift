import Logging
import VigilCore
import VigilPolicy
import VigilSensors

extension Agent {
    /// Opens the process sensor (`processes:` in collection.yaml): proc connector and fanotify,
    /// before the sandbox closes. A sensor that cannot be opened (no CAP_NET_ADMIN, not in the
    /// host's namespaces) is reported in the log and as agent health, and the agent runs on
    /// without process events.
    static func openProcessSensor(
        _ settings: CollectionSettings.Processes,
        logger: Logger,
        health: inout [Event]
    ) -> ProcessSensor? {
        let configuration = ProcessSensorConfiguration(
            maxProcesses: settings.maxProcesses,
            reportedActions: Set(settings.report.compactMap(ProcessEvent.Action.init(rawValue:))),
            useFanotify: settings.fanotify,
            readerNice: settings.readerNice
        )
        do {
            return try ProcessSensor(configuration: configuration, logger: logger)
        } catch {
            logger.error("process sensor unavailable; running without process events", metadata: ["error": "\(error)"])
            health.append(
                Event(payload: .health(AgentHealth(kind: "sensor_unavailable", message: "process sensor: \(error)")))
            )
            return nil
        }
    }

    /// Starts the reader of an opened process sensor; nil when there is none or it cannot start.
    static func startProcessSensor(_ sensor: ProcessSensor?, logger: Logger) -> ProcessSensor? {
        guard let sensor else { return nil }
        do {
            try sensor.start()
            return sensor
        } catch {
            logger.error("process sensor cannot start; running without process events", metadata: ["error": "\(error)"])
            return nil
        }
    }
}
