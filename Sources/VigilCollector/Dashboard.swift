import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import VigilCore

/// The collector's web dashboard: a server-rendered page of agents with their health, recent
/// alerts and an event search, with no scripts and no external assets.
///
/// | route | |
/// | --- | --- |
/// | `GET /dashboard` | the page; the event filters of `GET /v1/events` as query parameters search |
/// | `POST /dashboard/login` | form field `token` (the API token) → 303 to `/dashboard` with a session cookie |
/// | `POST /dashboard/logout` | clears the cookie → 303 to `/dashboard` |
///
/// Who may look: the read API's rule. With an API token configured, a valid session cookie or
/// `Authorization: Bearer TOKEN`; without one, loopback clients only. The session cookie holds an
/// expiry and an HMAC of it keyed with the token, never the token; it is `HttpOnly`,
/// `SameSite=Strict`, `Path=/dashboard` and `Secure` over TLS. Logging in is the only state a
/// request changes, so there is nothing to forge across sites.
enum Dashboard {
    static func register(on router: Router<CollectorRequestContext>, collector: Collector) {
        let access = Access(token: collector.configuration.apiToken, secure: collector.configuration.tls != nil)

        router.get("/dashboard") { request, context -> Response in
            let viewer: Access.Viewer
            switch access.check(request, context) {
            case .allowed(let v): viewer = v
            case .refused(let message):
                return page(DashboardPage.login(message: message, tokenConfigured: access.token != nil), .unauthorized)
            }
            let now = Timestamp.now()
            var search: DashboardPage.Search? = nil
            var status = HTTPResponse.Status.ok
            do {
                let fields = try HTML.formFields(request.uri.query ?? "").filter { !$0.value.isEmpty }
                if !fields.isEmpty {
                    search = DashboardPage.Search(parameters: fields)
                    let query = try EventQuery.parse(fields, maxLimit: collector.configuration.maxQueryLimit)
                    let page = try await collector.page(query)
                    search?.results = page.events
                    search?.nextCursor = page.nextCursor
                }
            } catch let error as HTML.FormError {
                search = DashboardPage.Search(parameters: [], error: "query string: \(error.message)")
                status = .badRequest
            } catch let refusal as EventQuery.Refusal {
                search?.error = refusal.message
                status = .badRequest
            }
            let alerts = try await recentAlerts(collector.store, count: 50)
            let content = DashboardPage.Content(
                agents: try await collector.store.agents(),
                alerts: alerts,
                search: search,
                loggedIn: viewer == .session,
                generatedAt: now
            )
            return page(DashboardPage.dashboard(content), status)
        }

        router.post("/dashboard/login") { request, context -> Response in
            guard let token = access.token else {
                return redirect(to: "/dashboard")
            }
            // A login posted from another site is refused (browsers say so in Sec-Fetch-Site).
            if request.headers[secFetchSite] == "cross-site" {
                return page(
                    DashboardPage.login(message: "log in from the dashboard's own page", tokenConfigured: true),
                    .forbidden
                )
            }
            let body = try await CollectorHTTP.collectBody(request, limit: 4096)
            let presented = (try? HTML.formFields(String(buffer: body)))?.first { $0.key == "token" }?.value ?? ""
            guard Collector.tokenMatches(presented, token) else {
                return page(
                    DashboardPage.login(message: "That is not the collector's API token.", tokenConfigured: true),
                    .unauthorized
                )
            }
            var response = redirect(to: "/dashboard")
            response.setCookie(access.sessionCookie(Session(token: token).issue(now: .now())))
            return response
        }

        router.post("/dashboard/logout") { _, _ -> Response in
            var response = redirect(to: "/dashboard")
            response.setCookie(access.sessionCookie("", maxAge: 0))
            return response
        }
    }

    /// The routes above with their methods, for `CollectorHTTP`'s 405 answers.
    static let served: [(path: RouterPath, methods: [HTTPRequest.Method])] = [
        ("/dashboard", [.get]), ("/dashboard/login", [.post]), ("/dashboard/logout", [.post]),
    ]

    /// The newest `count` alerts, newest first: one descending query, whatever their age.
    static func recentAlerts(_ store: any EventStore, count: Int) async throws -> [StoredEvent] {
        try await store.events(EventQuery(types: [.alert], order: .desc, limit: count))
    }

    // MARK: responses

    static let secFetchSite = HTTPField.Name("Sec-Fetch-Site")!
    static let referrerPolicy = HTTPField.Name("Referrer-Policy")!
    static let xFrameOptions = HTTPField.Name("X-Frame-Options")!

    /// Headers on every dashboard response: no scripts, no framing, no sniffing, no referrer, no caching.
    static func securityHeaders() -> HTTPFields {
        var headers = HTTPFields()
        headers[.contentSecurityPolicy] =
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        headers[.xContentTypeOptions] = "nosniff"
        headers[referrerPolicy] = "no-referrer"
        headers[xFrameOptions] = "DENY"
        headers[.cacheControl] = "no-store"
        return headers
    }

    static func page(_ html: String, _ status: HTTPResponse.Status = .ok) -> Response {
        var headers = securityHeaders()
        headers[.contentType] = "text/html; charset=utf-8"
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: html)))
    }

    static func redirect(to location: String) -> Response {
        var headers = securityHeaders()
        headers[.location] = location
        return Response(status: .seeOther, headers: headers)
    }

    // MARK: access

    /// The read API's rule, plus the session cookie.
    struct Access: Sendable {
        let token: String?
        /// Served over TLS: the cookie gets `Secure`.
        let secure: Bool

        static let cookieName = "vigil_dashboard"

        enum Viewer: Equatable {
            /// No API token configured; a loopback client.
            case loopback
            case bearer
            case session
        }

        enum Verdict {
            case allowed(Viewer)
            case refused(String)
        }

        func check(_ request: Request, _ context: CollectorRequestContext) -> Verdict {
            guard let token else {
                return context.isLoopbackClient
                    ? .allowed(.loopback)
                    : .refused("Reads from other hosts need an API token: start the collector with --api-token.")
            }
            if let header = request.headers[.authorization], header.hasPrefix("Bearer "),
                Collector.tokenMatches(header.dropFirst(7), token)
            {
                return .allowed(.bearer)
            }
            if let cookie = request.cookies[Self.cookieName] {
                return Session(token: token).isValid(cookie.value, now: .now())
                    ? .allowed(.session) : .refused("Your session has expired or is not valid: log in again.")
            }
            return .refused("Log in with the collector's API token.")
        }

        func sessionCookie(_ value: String, maxAge: Int = Int(Session.lifetimeSeconds)) -> Cookie {
            Cookie(
                name: Self.cookieName,
                value: value,
                maxAge: maxAge,
                path: "/dashboard",
                secure: secure,
                httpOnly: true,
                sameSite: .strict
            )
        }
    }

    /// A session cookie's value: `v1.EXPIRY.MAC`, where EXPIRY is Unix seconds and MAC is the
    /// base64url HMAC-SHA256 of `vigil-dashboard-session.v1.EXPIRY` keyed with the API token. Any
    /// collector with the same token accepts it; changing the token ends every session.
    struct Session: Sendable {
        static let lifetimeSeconds: Int64 = 12 * 3600
        let key: SymmetricKey

        init(token: String) {
            key = SymmetricKey(data: Data(token.utf8))
        }

        func issue(now: Timestamp) -> String {
            let expiry = Int64(now.secondsSinceEpoch) + Self.lifetimeSeconds
            return "v1.\(expiry)."
                + Self.base64url(Data(HMAC<SHA256>.authenticationCode(for: Self.label(expiry), using: key)))
        }

        /// Unexpired, not issued for longer than a session lasts, and signed with this token
        /// (compared in constant time).
        func isValid(_ value: String, now: Timestamp) -> Bool {
            let parts = value.split(separator: ".", omittingEmptySubsequences: false)
            guard parts.count == 3, parts[0] == "v1", let expiry = Int64(parts[1]),
                let mac = Self.unbase64url(parts[2])
            else { return false }
            let seconds = Int64(now.secondsSinceEpoch)
            guard expiry > seconds, expiry <= seconds + Self.lifetimeSeconds + 60 else { return false }
            return HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: Self.label(expiry), using: key)
        }

        static func label(_ expiry: Int64) -> Data { Data("vigil-dashboard-session.v1.\(expiry)".utf8) }

        static func base64url(_ data: Data) -> String {
            data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
                .replacingOccurrences(of: "=", with: "")
        }

        static func unbase64url(_ text: Substring) -> Data? {
            var s = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
            s += String(repeating: "=", count: (4 - s.count % 4) % 4)
            return Data(base64Encoded: s)
        }
    }
}
