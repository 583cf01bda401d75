import Foundation
import HubNode
import Hummingbird
import Logging
import NIOCore
import NodeKit
import Prometheus
import SyncProtocol

/// A refusal with its HTTP status and a message an operator can act on.
struct ApiError: Error {
    var status: HTTPResponse.Status
    var code: String
    var message: String

    static func badRequest(_ message: String) -> ApiError {
        ApiError(status: .badRequest, code: "bad_request", message: message)
    }
    static let unauthorized = ApiError(
        status: .unauthorized, code: "unauthorized",
        message: "send a valid API token: Authorization: Bearer lyt_... (create one with hub token create)")
    static func forbidden(_ message: String) -> ApiError {
        ApiError(status: .forbidden, code: "forbidden", message: message)
    }
    static func notFound(_ message: String) -> ApiError {
        ApiError(status: .notFound, code: "not_found", message: message)
    }
}

/// The routes of the console. Every `/api/v1` route needs a token; answers are JSON, or CSV
/// for reports with `format=csv`.
struct ConsoleAPI: Sendable {
    let databases: ConnectionPool
    let queries: OperatorQueries
    let status: HubStatus
    let registry: PrometheusCollectorRegistry
    let maxBodyBytes: Int
    let logger: Logger

    static let maxLimit = 500

    func register(on router: Router<BasicRequestContext>) {
        router.get("/") { _, _ in Self.page(DashboardPage.html) }
        router.get("/dashboard") { _, _ in Self.page(DashboardPage.html) }
        router.get("/healthz") { _, _ in await health() }
        router.get("/metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
        }
        router.get("/api/v1/stores") { request, _ in
            await answer(request, allowed: []) { role, _ in
                let live = status.snapshot()
                return try await databases.read { db in
                    try queries.stores(db, live: live, scope: role.partnerScope, now: wallClockMilliseconds())
                }
            }
        }
        router.get("/api/v1/stores/:id") { request, context in
            let id = context.parameters.get("id")
            return await answer(request, allowed: []) { role, _ in
                guard let id, let number = UInt32(id) else { throw ApiError.badRequest("a store id is a number") }
                let live = status.snapshot()[NodeID(number)]
                let found = try await databases.read { db in
                    try queries.store(
                        db, id: number, live: live, scope: role.partnerScope, now: wallClockMilliseconds())
                }
                if found.outOfScope { throw ApiError.forbidden("store \(number) belongs to another partner") }
                guard let json = found.json else { throw ApiError.notFound("no store with id \(number) is enrolled") }
                return json
            }
        }
        router.get("/api/v1/members") { request, _ in
            await answer(request, allowed: ["card", "phone"]) { role, query in
                try await member(card: query["card"], phone: query["phone"], role: role)
            }
        }
        router.post("/api/v1/members/search") { request, _ in
            var request = request
            let body = await readBody(&request)
            return await answer(request, allowed: []) { role, _ in
                let fields = try Self.object(try body.get(), allowed: ["card", "phone"])
                return try await member(
                    card: fields["card"]?.stringValue, phone: fields["phone"]?.stringValue, role: role)
            }
        }
        router.get("/api/v1/transactions") { request, _ in
            await answer(request, allowed: ["limit"]) { role, query in
                let limit = try Self.limit(query["limit"])
                return try await databases.read { db in
                    try queries.transactions(db, limit: limit, scope: role.partnerScope)
                }
            }
        }
        router.get("/api/v1/rules") { request, _ in
            await answer(request, allowed: []) { _, _ in try await databases.read { db in try queries.rules(db) } }
        }
        router.post("/api/v1/promo-codes") { request, _ in
            var request = request
            let body = await readBody(&request)
            return await answer(request, allowed: []) { role, _ in
                guard role == .coalitionOperator else {
                    throw ApiError.forbidden("only the operator creates promo codes")
                }
                let fields = try Self.object(try body.get(), allowed: ["points", "count"])
                guard let points = fields["points"]?.intValue, points > 0 else {
                    throw ApiError.badRequest("points must be a positive integer")
                }
                let count = fields["count"]?.intValue ?? 1
                let codes = try await databases.write { db in
                    try HubLedger().createPromoCodes(db, points: UInt64(points), count: Int(count))
                }
                return .object(["codes": .array(codes.map { .string($0) })])
            }
        }
        router.get("/api/v1/reports/rfm") { request, _ in
            await report(
                request,
                allowed: ["asOf", "newcomerDays", "sleeperDays", "lostDays", "frequentPurchases", "largeSpend"],
                operatorOnly: true
            ) { _, query in
                let day = try Self.day(query["asOf"], name: "asOf") ?? Int64(wallClockMilliseconds() / 86_400_000)
                var thresholds = RFMThresholds()
                func number(_ name: String, _ range: ClosedRange<Int64>) throws -> Int64? {
                    guard let text = query[name] else { return nil }
                    guard let value = Int64(text), range.contains(value) else {
                        throw ApiError.badRequest(
                            "\(name) must be a whole number from \(range.lowerBound) to \(range.upperBound)")
                    }
                    return value
                }
                thresholds.newcomerDays = try number("newcomerDays", 1...3_650) ?? thresholds.newcomerDays
                thresholds.sleeperDays = try number("sleeperDays", 1...3_650) ?? thresholds.sleeperDays
                thresholds.lostDays = try number("lostDays", 1...3_650) ?? thresholds.lostDays
                thresholds.frequentPurchases = Int(
                    try number("frequentPurchases", 1...10_000) ?? Int64(thresholds.frequentPurchases))
                thresholds.largeSpendMinor = UInt64(
                    try number("largeSpend", 1...1_000_000_000_000) ?? Int64(thresholds.largeSpendMinor))
                guard thresholds.sleeperDays < thresholds.lostDays else {
                    throw ApiError.badRequest("sleeperDays must be below lostDays")
                }
                let chosen = thresholds
                return try await databases.read { db in try queries.rfm(db, asOf: day, thresholds: chosen) }
            }
        }
        router.get("/api/v1/reports/partners") { request, _ in
            await report(request, allowed: ["from", "to", "partner"]) { scope, query in
                let (first, last) = try Self.period(query)
                return try await databases.read { db in
                    try queries.partners(db, first: first, last: last, scope: scope)
                }
            }
        }
        router.get("/api/v1/reports/clearing") { request, _ in
            await report(request, allowed: ["from", "to", "partner"]) { scope, query in
                let (first, last) = try Self.period(query)
                return try await databases.read { db in
                    try queries.clearing(db, first: first, last: last, scope: scope)
                }
            }
        }
        router.get("/api/v1/reports/liability") { request, _ in
            await report(request, allowed: ["partner"]) { scope, _ in
                try await databases.read { db in try queries.liability(db, scope: scope) }
            }
        }
        router.get("/api/v1/reports/exposure") { request, _ in
            await report(request, allowed: ["partner"]) { scope, _ in
                try await databases.read { db in try queries.exposure(db, scope: scope) }
            }
        }
    }

    // MARK: Handlers

    func health() async -> Response {
        let database: Bool = (try? await databases.read { db in try db.scalar("SELECT COUNT(*) FROM stores") }) != nil
        let body = JSONValue.object([
            "status": .string(database ? "ok" : "degraded"), "database": .string(database ? "ok" : "unreadable"),
            "sessions": .int(Int64(status.liveSessions)),
            "uptimeMs": .int(Int64(clamping: wallClockMilliseconds() - status.startedAt)),
        ])
        return Self.json(body, status: database ? .ok : .serviceUnavailable)
    }

    func member(card: String?, phone: String?, role: ApiRole) async throws -> JSONValue {
        guard (card == nil) != (phone == nil) else { throw ApiError.badRequest("give either card or phone") }
        if let card, card.count > 32 { throw ApiError.badRequest("a card number has 13 digits") }
        if let phone, phone.count > 32 { throw ApiError.badRequest("phone must be in E.164 form, like +4915112345678") }
        let found = try await databases.read { db in
            try queries.member(db, card: card, phone: phone, scope: role.partnerScope, now: wallClockMilliseconds())
        }
        guard let found else {
            throw ApiError.notFound("no member with this \(card != nil ? "card" : "phone") has reached the hub")
        }
        return found
    }

    /// Authenticates, checks the query's parameter names, runs `body` and turns any refusal
    /// into its status with a JSON error.
    func answer(
        _ request: Request, allowed: Set<String>,
        _ body: @Sendable (ApiRole, [String: String]) async throws -> JSONValue
    ) async -> Response {
        await respond(request, allowed: allowed) { role, query in Self.json(try await body(role, query)) }
    }

    /// A report: JSON, or CSV with `format=csv`; a partner token sees its own partner only.
    func report(
        _ request: Request, allowed: Set<String>, operatorOnly: Bool = false,
        _ body: @Sendable (String?, [String: String]) async throws -> OperatorReport
    ) async -> Response {
        await respond(request, allowed: allowed.union(["format"])) { role, query in
            if operatorOnly, role != .coalitionOperator {
                throw ApiError.forbidden("this report covers the whole coalition; it is the operator's")
            }
            let format = query["format"] ?? "json"
            guard format == "json" || format == "csv" else { throw ApiError.badRequest("format must be json or csv") }
            var scope = role.partnerScope
            if let asked = query["partner"] {
                if let own = scope, asked != own { throw ApiError.forbidden("this token sees partner \(own) only") }
                scope = asked
            }
            let report = try await body(scope, query)
            if format == "csv" {
                return Response(
                    status: .ok, headers: [.contentType: "text/csv; charset=utf-8"],
                    body: .init(byteBuffer: ByteBuffer(string: report.csv)))
            }
            return Self.json(report.json)
        }
    }

    private func respond(
        _ request: Request, allowed: Set<String>,
        _ body: @Sendable (ApiRole, [String: String]) async throws -> Response
    ) async -> Response {
        do {
            let role = try await authenticate(request)
            var query: [String: String] = [:]
            for (key, value) in request.uri.queryParameters {
                guard allowed.contains(String(key)) else {
                    throw ApiError.badRequest(
                        "unknown query parameter \(String(key).prefix(40))"
                            + (allowed.isEmpty ? "" : "; this route takes \(allowed.sorted().joined(separator: ", "))"))
                }
                guard query[String(key)] == nil else { throw ApiError.badRequest("parameter \(key) is given twice") }
                guard value.count <= 256 else { throw ApiError.badRequest("parameter \(key) is too long") }
                query[String(key)] = String(value)
            }
            return try await body(role, query)
        } catch let error as ApiError {
            return Self.error(error)
        } catch let error as HubError {
            return Self.error(.badRequest(error.description))
        } catch {
            logger.error("console request failed", metadata: ["path": "\(request.uri.path)", "error": "\(error)"])
            return Self.error(
                ApiError(
                    status: .internalServerError, code: "internal",
                    message: "the hub could not answer; the hub's log has the details"))
        }
    }

    func authenticate(_ request: Request) async throws -> ApiRole {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer "), header.count < 200 else {
            throw ApiError.unauthorized
        }
        let token = String(header.dropFirst("Bearer ".count)).trimmingCharacters(in: .whitespaces)
        guard let role = try await databases.read({ db in try HubLedger().role(db, token: token) }) else {
            throw ApiError.unauthorized
        }
        return role
    }

    /// Reads a request body, up to the limit, as a JSON value.
    func readBody(_ request: inout Request) async -> Result<JSONValue, ApiError> {
        let buffer: ByteBuffer
        do { buffer = try await request.collectBody(upTo: maxBodyBytes) } catch {
            return .failure(
                ApiError(
                    status: .contentTooLarge, code: "too_large",
                    message: "the request body is over \(maxBodyBytes) bytes"))
        }
        do { return .success(try JSONValue.parse(Array(buffer.readableBytesView))) } catch {
            return .failure(.badRequest("the body is not valid JSON: \(error)"))
        }
    }

    // MARK: Parsing

    static func object(_ value: JSONValue, allowed: Set<String>) throws -> [String: JSONValue] {
        guard case .object(let fields) = value else { throw ApiError.badRequest("the body must be a JSON object") }
        if let unknown = fields.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw ApiError.badRequest(
                "unknown field \(unknown.prefix(40)); this route takes \(allowed.sorted().joined(separator: ", "))")
        }
        return fields
    }

    static func limit(_ text: String?) throws -> Int {
        guard let text else { return 50 }
        guard let value = Int(text), (1...maxLimit).contains(value) else {
            throw ApiError.badRequest("limit must be 1 to \(maxLimit)")
        }
        return value
    }

    static func day(_ text: String?, name: String) throws -> Int64? {
        guard let text else { return nil }
        guard let day = Campaign.day(parsing: text) else { throw ApiError.badRequest("\(name) must be YYYY-MM-DD") }
        return day
    }

    static func period(_ query: [String: String]) throws -> (Int64, Int64) {
        guard let first = try day(query["from"], name: "from"), let last = try day(query["to"], name: "to") else {
            throw ApiError.badRequest("give from and to, YYYY-MM-DD")
        }
        guard last >= first, last - first <= 3_660 else {
            throw ApiError.badRequest("to must not be before from, and a period is at most ten years")
        }
        return (first, last)
    }

    // MARK: Responses

    static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
        Response(
            status: status, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(string: value.jsonLine)))
    }

    static func error(_ error: ApiError) -> Response {
        var response = json(
            .object(["error": .object(["code": .string(error.code), "message": .string(error.message)])]),
            status: error.status)
        if error.status == .unauthorized { response.headers[.wwwAuthenticate] = "Bearer realm=\"loyalty-hub\"" }
        return response
    }

    static func page(_ html: String) -> Response {
        Response(
            status: .ok,
            headers: [
                .contentType: "text/html; charset=utf-8",
                .contentSecurityPolicy: "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
            ],
            body: .init(byteBuffer: ByteBuffer(string: html)))
    }
}
