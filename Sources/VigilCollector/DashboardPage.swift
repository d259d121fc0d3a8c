import Foundation
import VigilCore

/// HTML text: every string that did not come from this file goes through `escape` before it
/// reaches a page. Agents control hostnames, rule titles, paths and command lines, so all of it
/// is hostile.
public enum HTML {
    /// Escapes `text` for HTML text and for a double- or single-quoted attribute value: `&`, `<`,
    /// `>`, `"` and `'` become character references, and control characters other than tab,
    /// newline and carriage return become U+FFFD.
    public static func escape(_ text: some StringProtocol) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            case "\t", "\n", "\r": out.unicodeScalars.append(scalar)
            case _ where scalar.value < 0x20 || (0x7f...0x9f).contains(scalar.value):
                out.unicodeScalars.append("\u{FFFD}")
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    /// Percent-encodes a query-string key or value (everything but RFC 3986's unreserved
    /// characters), for links; escape the whole link with `escape` when it goes into an attribute.
    static func queryComponent(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: unreserved) ?? ""
    }

    private static let unreserved = CharacterSet(
        charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
    )

    /// `/dashboard?k=v&…`, each key and value percent-encoded; `/dashboard` without parameters.
    static func dashboardLink(_ parameters: [(String, String)]) -> String {
        guard !parameters.isEmpty else { return "/dashboard" }
        return "/dashboard?"
            + parameters.map { queryComponent($0.0) + "=" + queryComponent($0.1) }.joined(separator: "&")
    }

    /// Why a form or query string could not be read.
    struct FormError: Error, Equatable {
        var message: String
    }

    /// Decodes `application/x-www-form-urlencoded` text (an HTML form's body, or a query string
    /// a GET form produced): pairs split on `&`, key from value on the first `=`, `+` is a space,
    /// then percent-decoding. Empty pairs are skipped; order is kept.
    static func formFields(_ text: some StringProtocol) throws(FormError) -> [(key: String, value: String)] {
        var fields: [(key: String, value: String)] = []
        for pair in String(text).split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ part: Substring) throws(FormError) -> String {
                guard let text = part.replacingOccurrences(of: "+", with: " ").removingPercentEncoding else {
                    throw FormError(message: "'\(part)' is not valid percent-encoding")
                }
                return text
            }
            let key = try decode(parts[0])
            let value = parts.count > 1 ? try decode(parts[1]) : ""
            fields.append((key, value))
        }
        return fields
    }
}

/// The dashboard's pages, rendered from data: pure functions, no I/O, so tests can render
/// hostile input directly.
enum DashboardPage {
    /// An event search: the filters as given (empty ones dropped) and its outcome.
    struct Search {
        var parameters: [(key: String, value: String)]
        /// Nil when the filters were refused (`error` says why).
        var results: [StoredEvent]?
        var error: String?
        /// The cursor of the next page (`after`, or `before` with `order=desc`), when there is one.
        var nextCursor: Int64?
    }

    struct Content {
        var agents: [AgentSummary]
        /// The newest alerts, newest first.
        var alerts: [StoredEvent]
        var search: Search?
        /// The viewer has a session cookie (show "Log out").
        var loggedIn: Bool
        var generatedAt: Timestamp
    }

    static func dashboard(_ content: Content) -> String {
        var body = ""
        body += "<header><h1>Vigil collector</h1><p class=\"meta\">rendered \(time(content.generatedAt))</p>"
        if content.loggedIn {
            body +=
                "<form method=\"post\" action=\"/dashboard/logout\" class=\"logout\"><button type=\"submit\">Log out</button></form>"
        }
        body += "</header>\n"
        body += agentsSection(content.agents)
        let hostnames = Dictionary(content.agents.map { ($0.agentId, $0.hostname) }) { first, _ in first }
        body += alertsSection(content.alerts, hostnames: hostnames)
        body += searchSection(content.search)
        return document(title: "Vigil dashboard", body: body)
    }

    /// The login page (or, without an API token configured, the explanation why there is none).
    static func login(message: String?, tokenConfigured: Bool) -> String {
        var body = "<header><h1>Vigil collector</h1></header>\n<section id=\"login\"><h2>Log in</h2>"
        if let message { body += "<p class=\"error\" role=\"alert\">\(HTML.escape(message))</p>" }
        if tokenConfigured {
            body += """
                <form method="post" action="/dashboard/login">\
                <label>API token <input type="password" name="token" autocomplete="current-password" required></label> \
                <button type="submit">Log in</button></form>\
                <p class="meta">The collector's API token (<code>--api-token</code> / <code>VIGIL_API_TOKEN</code>). \
                The session cookie holds a signature derived from it, not the token, and lasts 12 hours.</p>
                """
        } else {
            body +=
                "<p>This collector has no API token, so its dashboard answers loopback clients only. "
                + "Start it with <code>--api-token</code> to reach the dashboard from other hosts.</p>"
        }
        body += "</section>\n"
        return document(title: "Vigil dashboard: log in", body: body)
    }

    // MARK: sections

    static func agentsSection(_ agents: [AgentSummary]) -> String {
        var s = "<section id=\"agents\"><h2>Agents (\(agents.count))</h2>\n"
        guard !agents.isEmpty else { return s + "<p class=\"empty\">No agent has enrolled yet.</p></section>\n" }
        s += "<table><thead><tr><th>Agent</th><th>Hostname</th><th>Version</th><th>Policy</th><th>State</th>"
        s += "<th>Last seen</th><th>Batches</th><th>Events</th><th>Chain</th><th>Declared gaps</th><th>Dropped</th>"
        s += "<th>Selftest</th><th>Backlog</th><th>Shed</th><th>Queue/kernel drops</th></tr></thead><tbody>\n"
        for agent in agents {
            let chainClass = agent.chainStatus == "whole" ? "ok" : "bad"
            let selftestClass = agent.lastSelftest.map { $0.passed ? "ok" : "bad" } ?? "muted"
            s += "<tr class=\"agent\">"
            s += "<td><a href=\"\(HTML.escape(HTML.dashboardLink([("agent", agent.agentId)])))\">"
            s += "<code>\(HTML.escape(agent.agentId))</code></a></td>"
            s += "<td class=\"hostname\">\(HTML.escape(agent.hostname))</td>"
            s += "<td class=\"version\">\(HTML.escape(agent.version ?? "-"))</td>"
            if let hash = agent.policyHash {
                s +=
                    "<td class=\"policy\" title=\"\(HTML.escape(hash))\"><code>\(HTML.escape(hash.prefix(12)))</code></td>"
            } else {
                s += "<td class=\"policy muted\">-</td>"
            }
            s += agent.revoked ? "<td class=\"bad\">revoked</td>" : "<td class=\"ok\">active</td>"
            s += "<td>\(agent.lastSeen.map(time) ?? "never")</td>"
            s += "<td>\(agent.lastBatchSeq)</td><td>\(agent.events)</td>"
            var chainTitle = ""
            if let latest = agent.anomalies.last {
                chainTitle = " title=\"\(HTML.escape("batch \(latest.batchSeq): \(latest.detail)"))\""
            }
            s += "<td class=\"\(chainClass)\"\(chainTitle)>\(HTML.escape(agent.chainStatus))"
            if !agent.anomalies.isEmpty { s += " (\(agent.anomalies.count) anomalies)" }
            s += "</td>"
            s += "<td class=\"\(agent.declaredGaps > 0 ? "warn" : "ok")\">\(agent.declaredGaps)</td>"
            s += "<td class=\"\(agent.droppedEvents > 0 ? "warn" : "ok")\">\(agent.droppedEvents)</td>"
            s += "<td class=\"\(selftestClass)\">\(HTML.escape(agent.selftestStatus))</td>"
            s += statusCells(agent.lastStatus)
            s += "</tr>\n"
        }
        return s + "</tbody></table></section>\n"
    }

    /// Backlog, shed and drop cells from the agent's latest `status` report; dashes without one.
    static func statusCells(_ status: AgentStatusReport?) -> String {
        guard let status else {
            return "<td class=\"backlog muted\">-</td><td class=\"muted\">-</td><td class=\"muted\">-</td>"
        }
        let title = HTML.escape("reported \(status.time.iso8601): \(status.spoolBytes) bytes spooled")
        var s = "<td class=\"backlog\" title=\"\(title)\">\(status.spoolEvents)</td>"
        s += "<td class=\"\(status.eventsShed > 0 ? "warn" : "ok")\">\(status.eventsShed)</td>"
        let drops = status.queueDrops + status.kernelDrops > 0
        s += "<td class=\"\(drops ? "warn" : "ok")\">\(status.queueDrops) / \(status.kernelDrops)</td>"
        return s
    }

    static func alertsSection(_ alerts: [StoredEvent], hostnames: [String: String] = [:]) -> String {
        var s = "<section id=\"alerts\"><h2>Recent alerts (\(alerts.count), newest first)</h2>\n"
        guard !alerts.isEmpty else { return s + "<p class=\"empty\">No alerts stored.</p></section>\n" }
        s += "<table><thead><tr><th>Time</th><th>Agent</th><th>Level</th><th>Rule</th><th>Title</th>"
        s += "<th>ATT&amp;CK</th><th>Matched</th></tr></thead><tbody>\n"
        for stored in alerts {
            guard case .alert(let alert) = stored.event.payload else { continue }
            s += "<tr class=\"alert\">"
            s += "<td>\(time(stored.event.time))</td>"
            s += "<td><code>\(HTML.escape(stored.agentId.prefix(12)))</code>"
            if let hostname = hostnames[stored.agentId] {
                s += " <span class=\"hostname\">\(HTML.escape(hostname))</span>"
            }
            s += "</td><td class=\"level-\(levelClass(alert.level))\">\(HTML.escape(alert.level))</td>"
            s += "<td class=\"rule\"><a href=\"\(HTML.escape(HTML.dashboardLink([("rule", alert.ruleId)])))\">"
            s += "\(HTML.escape(alert.ruleId))</a></td>"
            s += "<td class=\"title\">\(HTML.escape(alert.title))"
            if alert.suppressedCount > 0 { s += " <span class=\"meta\">(+\(alert.suppressedCount) suppressed)</span>" }
            s += "</td><td class=\"tags\">"
            s += alert.tags.map { "<span class=\"tag\">\(HTML.escape($0))</span>" }.joined(separator: " ")
            s += "</td><td class=\"matched\">"
            if let matched = alert.event { s += HTML.escape(EventFormatter.summary(matched.payload)) }
            s += "</td></tr>\n"
        }
        return s + "</tbody></table></section>\n"
    }

    /// The filters the form offers: every name `EventQuery.parse` knows except the paging ones,
    /// so filters added there show up here.
    static var formFilters: [String] {
        let first = ["agent", "type", "rule", "since", "until"]
        let paging = ["after", "before", "limit"]
        let rest = EventQuery.parameterNames.filter { !first.contains($0) && !paging.contains($0) }
        return first.filter(EventQuery.parameterNames.contains) + rest
    }

    static let filterHints: [String: String] = [
        "agent": "agent id",
        "type": EventType.allCases.map(\.rawValue).joined(separator: ","),
        "rule": "rule id",
        "since": "1h, 7d or 2026-11-28T13:00:00Z",
        "until": "1h, 7d or 2026-11-28T13:00:00Z",
        "level": "high,critical",
        "min_level": "medium",
        "field": "Image:/usr/bin/curl",
        "order": "asc or desc",
    ]

    static func searchSection(_ search: Search?) -> String {
        let given = search?.parameters ?? []
        func value(_ name: String) -> String { given.first { $0.key == name }?.value ?? "" }
        var s = "<section id=\"search\"><h2>Event search</h2>\n"
        s += "<form method=\"get\" action=\"/dashboard\" class=\"search\">"
        for name in formFilters {
            let hint = filterHints[name].map { " placeholder=\"\(HTML.escape($0))\"" } ?? ""
            s += "<label>\(HTML.escape(name)) <input type=\"text\" name=\"\(HTML.escape(name))\" "
            s += "value=\"\(HTML.escape(value(name)))\"\(hint)></label> "
        }
        s += "<label>limit <input type=\"number\" name=\"limit\" min=\"1\" value=\"\(HTML.escape(value("limit")))\" "
        s += "placeholder=\"100\"></label> "
        s += "<button type=\"submit\">Search</button> <a href=\"/dashboard\">clear</a></form>\n"
        guard let search else { return s + "</section>\n" }
        if let error = search.error {
            return s + "<p class=\"error\" id=\"search-error\" role=\"alert\">\(HTML.escape(error))</p></section>\n"
        }
        let results = search.results ?? []
        s +=
            "<h3 id=\"results\">Results (\(results.count)\(search.nextCursor == nil ? "" : ", more on the next page"))</h3>\n"
        if results.isEmpty { return s + "<p class=\"empty\">No events match.</p></section>\n" }
        s += "<table><thead><tr><th>Id</th><th>Time</th><th>Agent</th><th>Seq</th><th>Type</th><th>Event</th></tr>"
        s += "</thead><tbody>\n"
        for stored in results {
            s += "<tr class=\"event\"><td>\(stored.id)</td><td>\(time(stored.event.time))</td>"
            s += "<td><code>\(HTML.escape(stored.agentId.prefix(12)))</code></td><td>\(stored.event.seq)</td>"
            s += "<td>\(HTML.escape(stored.event.type.rawValue))</td>"
            s += "<td class=\"summary\">\(HTML.escape(EventFormatter.summary(stored.event.payload)))</td></tr>\n"
        }
        s += "</tbody></table>\n"
        if let next = search.nextCursor {
            let parameters = search.parameters.filter { $0.key != "after" && $0.key != "before" }
                .map { ($0.key, $0.value) }
            let cursor = search.parameters.contains { $0.key == "order" && $0.value == "desc" } ? "before" : "after"
            let link = HTML.dashboardLink(parameters + [(cursor, String(next))])
            s += "<p><a id=\"next-page\" href=\"\(HTML.escape(link))\">Next page</a></p>\n"
        }
        return s + "</section>\n"
    }

    // MARK: pieces

    static func levelClass(_ level: String) -> String {
        switch level.lowercased() {
        case "critical": "critical"
        case "high": "high"
        case "medium": "medium"
        case "low": "low"
        default: "info"
        }
    }

    /// `2026-11-28 13:25:55Z`: UTC to the second.
    static func time(_ t: Timestamp) -> String {
        let iso = t.iso8601
        return String(iso.prefix(19)).replacingOccurrences(of: "T", with: " ") + "Z"
    }

    static func document(title: String, body: String) -> String {
        """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>\(HTML.escape(title))</title>
        <style>\(style)</style>
        </head><body>
        \(body)</body></html>

        """
    }

    static let style = """
        body{font:14px/1.4 system-ui,sans-serif;margin:1em 2em;color:#222}
        header{display:flex;gap:1em;align-items:baseline}h1{font-size:1.4em}
        table{border-collapse:collapse;margin:.5em 0;width:100%}
        th,td{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top}
        th{background:#f3f3f3}td.summary,td.matched{font-family:monospace;word-break:break-all}
        .ok{color:#176117}.bad,.error{color:#a00;font-weight:600}.warn{color:#a60}.muted,.meta,.empty{color:#777}
        .level-critical,.level-high{color:#a00;font-weight:600}.level-medium{color:#a60}
        .tag{display:inline-block;background:#eef;border-radius:3px;padding:0 .3em;margin:1px;font-family:monospace}
        form.search label{margin-right:.5em}form.logout{margin-left:auto}
        """
}
