import AsyncHTTPClient
import Foundation
import Logging
import ServiceLifecycle
import VigilAgent
import VigilCollector
import VigilCore

/// `vigild --demo`: an agent and an in-process collector on loopback, wired like a real
/// deployment (enrollment, signed batches, SQLite store), with events printed as stored.
struct Demo {
    var policiesDirectory: String?
    var duration: Int?

    func run() async throws {
        let logger = Logger(label: "vigild.demo")
        guard let policies = resolvePolicies() else {
            throw DemoError(
                "no policies directory found: run from the repository root (./Policies) or pass --policies DIR"
            )
        }
        var template = Array("/tmp/vigil-demo.XXXXXX".utf8CString)
        guard
            let base = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }).map({ String(cString: $0) }
            )
        else {
            throw DemoError("cannot create a temporary directory under /tmp")
        }
        let watched = base + "/watched"
        try FileManager.default.createDirectory(atPath: watched, withIntermediateDirectories: true)
        let token = (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        try FileManager.default.createDirectory(atPath: base + "/collector", withIntermediateDirectories: true)
        let storePath = base + "/collector/events.sqlite"
        let store = try SQLiteEventStore(path: storePath)
        let collector = Collector(
            store: store,
            configuration: CollectorConfiguration(
                host: "127.0.0.1",
                port: 0,
                store: .sqlite(path: storePath),
                enrollToken: token
            ),
            logger: logger
        )
        let (ports, portContinuation) = AsyncStream<Int>.makeStream()
        let app = try CollectorServer.makeApplication(collector: collector, logger: logger) { port in
            portContinuation.yield(port)
            portContinuation.finish()
        }
        let httpClient = CollectorClient.makeHTTPClient()
        let agent = DemoAgent(
            collector: collector,
            ports: ports,
            base: base,
            policies: policies,
            watched: watched,
            token: token,
            logger: logger,
            httpClient: httpClient,
            storePath: storePath
        )
        let printer = LivePrinter(collector: collector)
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [.init(service: app), .init(service: printer), .init(service: agent)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await withThrowingTaskGroup(of: Bool.self) { tasks in
            tasks.addTask {
                try await group.run()
                return true
            }
            if let duration {
                tasks.addTask {
                    try await Task.sleep(for: .seconds(duration))
                    // Graceful: the agent drains into the collector before the server stops.
                    await group.triggerGracefulShutdown()
                    return false
                }
            }
            while let groupFinished = try await tasks.next() {
                if groupFinished {
                    tasks.cancelAll()  // Ctrl-C came first: stop the timer
                    break
                }
            }
        }
        try? await httpClient.shutdown()
        try await store.close()
        print("demo stopped; the collector's store is kept at \(storePath)")
    }

    func resolvePolicies() -> String? {
        if let policiesDirectory { return policiesDirectory }
        for candidate in ["Policies", "/etc/vigil/policies", "/usr/share/vigil/policies"] {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: candidate, isDirectory: &isDir), isDir.boolValue {
                return candidate.hasPrefix("/") ? candidate : FileManager.default.currentDirectoryPath + "/" + candidate
            }
        }
        return nil
    }
}

struct DemoError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Waits for the collector's port, then runs a real `Agent` against it and makes a little
/// file activity in the demo's watched directory so there is something to see at once.
struct DemoAgent: Service {
    let collector: Collector
    let ports: AsyncStream<Int>
    let base: String
    let policies: String
    let watched: String
    let token: String
    let logger: Logger
    let httpClient: HTTPClient
    let storePath: String

    func run() async throws {
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else { return }
        var configuration = AgentConfiguration(
            collectorURL: "http://127.0.0.1:\(port)",
            enrollToken: token,
            stateDirectory: base + "/state",
            policiesDirectory: policies,
            shipping: .init(batchMaxEvents: 500, batchMaxBytes: 1 << 20, batchMaxAgeMilliseconds: 200)
        )
        configuration.additionalWatchPaths = [watched]
        // The demo's collector store sits under /tmp, which the default policy watches.
        configuration.additionalExcludePaths = [base + "/collector"]
        print(
            """
            Vigil demo
              collector  http://127.0.0.1:\(port)  (SQLite store: \(storePath))
              agent      state in \(base)/state, policies from \(policies)
              watching   the paths of \(policies)/collection.yaml, and \(watched)
            Events appear below once the collector has verified and stored them. Try:
              touch \(watched)/hello
              vigilctl events --collector http://127.0.0.1:\(port)
            Ctrl-C stops the demo.

            """
        )
        fflush(nil)
        let agent = Agent(configuration: configuration, logger: logger, httpClient: httpClient)
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                try await agent.run()
                return true
            }
            // Once the collector has stored the agent's `started` record, its sensors watch.
            let started = collector.subscribe()
            group.addTask {
                for await stored in started {
                    if case .health(let health) = stored.event.payload, health.kind == "started" {
                        try await Self.makeActivity(in: watched)
                        break
                    }
                }
                return false
            }
            // The demo ends with its agent. An agent stopped before it enrolled never stores
            // `started`: the activity's wait is cancelled (its stream then ends) rather than
            // holding the demo open.
            while let agentEnded = try await group.next() {
                if agentEnded {
                    group.cancelAll()
                    break
                }
            }
        }
    }

    /// Write, setuid, rename, delete: paced so each step is seen with the file's metadata.
    static func makeActivity(in dir: String) async throws {
        let path = dir + "/hello.txt"
        try Data("hello from the vigil demo\n".utf8).write(to: URL(fileURLWithPath: path))
        try await Task.sleep(for: .milliseconds(300))
        chmod(path, 0o4755)
        try await Task.sleep(for: .milliseconds(300))
        rename(path, dir + "/hello-renamed.txt")
        try await Task.sleep(for: .milliseconds(300))
        unlink(dir + "/hello-renamed.txt")
    }
}

/// Prints every event the collector stores, one line each.
struct LivePrinter: Service {
    let collector: Collector

    func run() async throws {
        for await stored in collector.subscribe().cancelOnGracefulShutdown() {
            print(EventFormatter.line(stored.event, agentId: stored.agentId))
            fflush(nil)
        }
    }
}
