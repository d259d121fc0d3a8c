import Foundation

/// Writes what `vigild --config` needs in a test directory: `DIR/policies/collection.yaml` and
/// `DIR/vigild.yaml` (state in `DIR/state`, policies in `DIR/policies`).
public enum AgentFixture {
    /// - Parameters:
    ///   - collection: the body of collection.yaml; without a `budget:` section, one that never
    ///     sheds is added (the self-watchdog has its own tests).
    ///   - collectorURL: where batches go.
    ///   - enrollToken: nil writes no token (the key is taken as enrolled out of band).
    ///   - collectorTLS: the body of `collector.tls`, lines indented by four spaces
    ///     (`"    ca_file: /ca.crt\n"`, say); nil writes no `tls`.
    ///   - batchMaxAgeMilliseconds: how soon a partial batch is sent; nil keeps the default.
    ///   - extraConfiguration: top-level YAML appended to vigild.yaml.
    /// - Returns: the path of vigild.yaml.
    @discardableResult
    public static func write(
        in dir: String,
        collection: String,
        collectorURL: String,
        enrollToken: String? = nil,
        collectorTLS: String? = nil,
        batchMaxAgeMilliseconds: Int? = 100,
        extraConfiguration: String = ""
    ) throws -> String {
        try FileManager.default.createDirectory(atPath: dir + "/policies", withIntermediateDirectories: true)
        // The self-watchdog sheds under the bursts these tests make (a debug agent easily passes
        // the default 10% of a core): unless a test sets its own `budget:`, give it one so
        // large that delivery, not shedding, is what the test sees.
        var collection = collection
        if !collection.contains("budget:") {
            if !collection.isEmpty, !collection.hasSuffix("\n") { collection += "\n" }
            collection += "budget:\n  cpu_percent: 400\n  memory_mb: 65536\n"
        }
        try collection.write(toFile: dir + "/policies/collection.yaml", atomically: true, encoding: .utf8)
        var config = "collector:\n  url: \(collectorURL)\n"
        if let enrollToken { config += "  enroll_token: \(enrollToken)\n" }
        if let collectorTLS { config += "  tls:\n" + collectorTLS }
        config += "state_dir: state\npolicies_dir: policies\n"
        if let batchMaxAgeMilliseconds { config += "shipping:\n  batch_max_age_ms: \(batchMaxAgeMilliseconds)\n" }
        config += extraConfiguration
        let path = dir + "/vigild.yaml"
        try config.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }
}
