import Synchronization
import VigilCore

/// A loaded, compiled policy: what the agent evaluates events against.
///
/// ```swift
/// let (policy, notes) = try PolicySet.load(directory: "/etc/vigil/policies")
/// for alert in policy.evaluate(event) { ... }
/// ```
/// Thread-safe; evaluation takes one short lock per event (scratch space and the rate-limit
/// and suppression state).
public final class PolicySet: Sendable {
    /// The compiled applicable rules.
    public let compiled: CompiledPolicy
    /// What loading found, including not-applicable rules.
    public let report: PolicyReport
    private let state: Mutex<State>

    struct State {
        var scratch: MatchScratch
        var throttles: [Int: RuleThrottle] = [:]
    }

    /// Compiles `rules` (not-applicable ones are left out).
    public init(rules: [SigmaRule], report: PolicyReport = PolicyReport()) {
        let compiled = CompiledPolicy(rules: rules)
        self.compiled = compiled
        self.report = report
        state = Mutex(State(scratch: compiled.makeScratch()))
    }

    /// Loads and compiles the rules under `directory` (`collection.yaml` is skipped). Throws a
    /// `PolicyLoadError` holding every error when any file is broken, so a broken policy is
    /// refused as a whole; otherwise returns the policy and the not-applicable rules with
    /// their reasons.
    public static func load(directory: String) throws(PolicyLoadError) -> (PolicySet, [RuleStatus]) {
        try load(paths: [directory])
    }

    /// Like `load(directory:)`, for several files or directories.
    public static func load(paths: [String]) throws(PolicyLoadError) -> (PolicySet, [RuleStatus]) {
        let (rules, report) = PolicyLoader.load(paths: paths)
        guard report.errors.isEmpty else { throw PolicyLoadError(errors: report.errors) }
        return (PolicySet(rules: rules, report: report), report.notApplicable)
    }

    /// The alerts `event` raises: rules with action `alert`, after exceptions, rate limits and
    /// suppression. `localAddresses` lets flows say whether this host initiated them.
    public func evaluate(_ event: Event, localAddresses: Set<String>? = nil) -> [Alert] {
        hits(event, localAddresses: localAddresses).filter { $0.action == .alert }.map(\.alert)
    }

    /// Every reported hit for `event`, with its action and suppressed-hit count.
    public func hits(_ event: Event, localAddresses: Set<String>? = nil) -> [RuleHit] {
        hits(EventFields(event, localAddresses: localAddresses), event: event, time: event.time)
    }

    /// Hits for any field source; `event` is attached to the alerts, `time` drives rate limits
    /// and suppression windows.
    public func hits(_ fields: some SigmaFields, event: Event?, time: Timestamp) -> [RuleHit] {
        state.withLock { state in
            let matched = compiled.matches(fields, scratch: &state.scratch)
            var out: [RuleHit] = []
            for index in matched {
                let rule = compiled.rules[index]
                var suppressed: UInt64 = 0
                let settings = rule.vigil
                if settings.rateLimit != nil || settings.suppression != nil {
                    var throttle = state.throttles[index] ?? RuleThrottle()
                    let admitted = throttle.admit(settings, fields: fields, now: time.nanosecondsSinceEpoch)
                    state.throttles[index] = throttle
                    guard let count = admitted else { continue }
                    suppressed = count
                }
                out.append(
                    RuleHit(
                        alert: Alert(
                            ruleId: rule.id,
                            title: rule.title,
                            level: rule.level,
                            tags: rule.tags,
                            event: event,
                            author: rule.author,
                            suppressedCount: suppressed
                        ),
                        action: settings.action,
                        suppressedCount: suppressed
                    )
                )
            }
            return out
        }
    }

    /// The rules matching `fields`, ignoring rate limits and suppression (exceptions apply):
    /// what `vigilctl policy test` reports.
    public func matchingRules(_ fields: some SigmaFields) -> [SigmaRule] {
        state.withLock { state in compiled.matches(fields, scratch: &state.scratch).map { compiled.rules[$0] } }
    }

    /// Whether a rule with action `alert` matches `fields`, as `matchingRules` would say (rate
    /// limits and suppression are not consulted, so no state changes): what a full sensor
    /// queue keeps.
    public func hasAlertingMatch(_ fields: some SigmaFields) -> Bool {
        state.withLock { state in
            compiled.matches(fields, scratch: &state.scratch).contains { compiled.rules[$0].vigil.action == .alert }
        }
    }
}

/// A rule hit after Vigil's settings were applied.
public struct RuleHit: Sendable, Hashable {
    public var alert: Alert
    public var action: VigilSettings.Action
    /// Hits of the same rule (and suppression key) dropped by suppression or rate limiting
    /// since the previous reported hit.
    public var suppressedCount: UInt64
}

/// A policy refused because of errors.
public struct PolicyLoadError: Error, Sendable, CustomStringConvertible {
    public var errors: [PolicyError]
    public var description: String { errors.map(\.description).joined(separator: "\n") }
}
