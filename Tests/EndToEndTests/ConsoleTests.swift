import Foundation
import Harness
import NodeKit
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// An HTTP answer.
struct HTTPAnswer {
    var status: Int
    var contentType: String
    var body: String
    var json: JSONValue? { try? JSONValue.parse(Array(body.utf8)) }
}

/// A blocking HTTP client for the tests (URLSession, one request at a time).
struct ConsoleClient {
    let port: UInt16

    func request(_ method: String, _ path: String, token: String? = nil, body: [UInt8]? = nil) throws -> HTTPAnswer {
        guard let url = URL(string: "http://127.0.0.1:\(port)\(path)") else { throw HarnessError("bad path \(path)") }
        var request = URLRequest(url: url)
        request.httpMethod = method
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        if let body {
            request.httpBody = Data(body)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        final class Box: @unchecked Sendable {
            // @unchecked: written once before `done` is signalled, read after.
            var answer: Result<HTTPAnswer, any Error> = .failure(HarnessError("no answer"))
        }
        let box = Box()
        let done = DispatchSemaphore(value: 0)
        URLSession.shared.dataTask(with: request) { data, response, error in
            if let http = response as? HTTPURLResponse {
                box.answer = .success(
                    HTTPAnswer(
                        status: http.statusCode,
                        contentType: http.value(forHTTPHeaderField: "Content-Type") ?? "",
                        body: String(decoding: data ?? Data(), as: UTF8.self)))
            } else {
                box.answer = .failure(error ?? HarnessError("no HTTP response"))
            }
            done.signal()
        }.resume()
        guard done.wait(timeout: .now() + 30) == .success else { throw HarnessError("\(method) \(path) timed out") }
        return try box.answer.get()
    }

    func get(_ path: String, token: String? = nil) throws -> HTTPAnswer { try request("GET", path, token: token) }
}

/// Checks JSON against the schemas of docs/openapi.json (the subset the spec uses: type,
/// properties, required, additionalProperties, items, enum, oneOf, $ref).
struct OpenAPIChecker {
    let spec: JSONValue

    init() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/openapi.json")
        spec = try JSONValue.parse(Array(try Data(contentsOf: url)))
    }

    /// The schema of a path's JSON answer for a status.
    func responseSchema(_ path: String, _ method: String, status: Int) -> JSONValue? {
        spec["paths"]?[path]?[method]?["responses"]?["\(status)"]?["content"]?["application/json"]?["schema"]
    }

    var documentedPaths: [String] {
        guard case .object(let paths)? = spec["paths"] else { return [] }
        return paths.keys.sorted()
    }

    func resolve(_ schema: JSONValue) -> JSONValue {
        if let reference = schema["$ref"]?.stringValue, reference.hasPrefix("#/components/schemas/") {
            return spec["components"]?["schemas"]?[String(reference.dropFirst("#/components/schemas/".count))] ?? .null
        }
        return schema
    }

    /// Problems found, each with the JSON path where it is.
    func problems(_ value: JSONValue, _ rawSchema: JSONValue, at path: String = "$") -> [String] {
        let schema = resolve(rawSchema)
        if case .array(let options)? = schema["oneOf"] {
            let matching = options.filter { problems(value, $0, at: path).isEmpty }.count
            return matching == 1 ? [] : ["\(path): matches \(matching) of the oneOf schemas"]
        }
        var types: [String] = []
        if let single = schema["type"]?.stringValue { types = [single] }
        if case .array(let many)? = schema["type"] { types = many.compactMap(\.stringValue) }
        let actual: String
        switch value {
        case .null: actual = "null"
        case .bool: actual = "boolean"
        case .int: actual = "integer"
        case .double: actual = "number"
        case .string: actual = "string"
        case .array: actual = "array"
        case .object: actual = "object"
        }
        if !types.isEmpty, !types.contains(actual), !(actual == "integer" && types.contains("number")) {
            return ["\(path): \(actual), expected \(types.joined(separator: " or "))"]
        }
        if case .array(let allowed)? = schema["enum"], !allowed.contains(value) {
            return ["\(path): \(value) is not one of the documented values"]
        }
        var found: [String] = []
        switch value {
        case .object(let fields):
            let properties: [String: JSONValue]
            if case .object(let declared)? = schema["properties"] { properties = declared } else { properties = [:] }
            if case .array(let required)? = schema["required"] {
                for name in required.compactMap(\.stringValue) where fields[name] == nil {
                    found.append("\(path): missing \(name)")
                }
            }
            for (name, field) in fields {
                if let declared = properties[name] {
                    found += problems(field, declared, at: "\(path).\(name)")
                } else if let additional = schema["additionalProperties"] {
                    if additional == .bool(false) {
                        found.append("\(path): undocumented field \(name)")
                    } else if case .object = additional {
                        found += problems(field, additional, at: "\(path).\(name)")
                    }
                }
            }
        case .array(let items):
            if let itemSchema = schema["items"] {
                for (index, item) in items.enumerated() { found += problems(item, itemSchema, at: "\(path)[\(index)]") }
            }
        default: break
        }
        return found
    }
}

extension ProcessClusters {
    /// The operator console against a real hub with the walkthrough's data: the API, its
    /// access rules and bad input, checked against docs/openapi.json; /metrics; the dashboard
    /// in headless Chromium.
    @Suite struct ConsoleTests {
        struct Setup {
            let cluster: LocalCluster
            let client: ConsoleClient
            let operatorToken: String
            let grocerToken: String
        }

        /// The hub on SQLite, and on PostgreSQL when the tests have one.
        static let databases: [String?] = [nil] + (postgresURL.map { [$0] } ?? [])

        func withConsole(database: String? = nil, _ body: (Setup) throws -> Void) throws {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
                "console-\(UUID().uuidString)")
            let cluster = try LocalCluster(binaries: LocalCluster.locateBinaries(), workDirectory: directory)
            defer {
                cluster.stop()
                try? FileManager.default.removeItem(at: directory)
            }
            cluster.hubDatabaseURL = database.map {
                $0 + "?schema=console_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
            }
            do {
                _ = try Walkthrough.run(cluster) { _ in }
                let operatorToken = try cluster.runTool(
                    "hub", ["token", "create"] + cluster.hubDataArguments + ["--label", "operator"])
                let grocerToken = try cluster.runTool(
                    "hub",
                    ["token", "create"] + cluster.hubDataArguments + ["--label", "grocer", "--partner", "grocer"])
                try body(
                    Setup(
                        cluster: cluster, client: ConsoleClient(port: cluster.consolePort),
                        operatorToken: operatorToken, grocerToken: grocerToken))
            } catch {
                cluster.dumpLogs()
                throw error
            }
        }

        @Test(arguments: databases)
        func theAPIAnswersWhatTheSpecDocumentsWithAccessRulesAndBadInput(database: String?) throws {
            try withConsole(database: database) { setup in
                let client = setup.client
                let checker = try OpenAPIChecker()
                let card = Walkthrough.card
                let phone = Walkthrough.phone.replacingOccurrences(of: "+", with: "%2B")
                // Every documented JSON route, with the operator's token, matches its schema.
                let calls: [(String, String, String)] = [
                    ("/healthz", "/healthz", "get"),
                    ("/api/v1/stores", "/api/v1/stores", "get"),
                    ("/api/v1/stores/1", "/api/v1/stores/{id}", "get"),
                    ("/api/v1/members?card=\(card)", "/api/v1/members", "get"),
                    ("/api/v1/members?phone=\(phone)", "/api/v1/members", "get"),
                    ("/api/v1/transactions?limit=10", "/api/v1/transactions", "get"),
                    ("/api/v1/rules", "/api/v1/rules", "get"),
                    ("/api/v1/reports/rfm", "/api/v1/reports/rfm", "get"),
                    ("/api/v1/reports/rfm?asOf=2027-06-01&lostDays=90&sleeperDays=30", "/api/v1/reports/rfm", "get"),
                    ("/api/v1/reports/partners?from=2000-01-01&to=2009-12-31", "/api/v1/reports/partners", "get"),
                    ("/api/v1/reports/clearing?from=2020-01-01&to=2029-12-31", "/api/v1/reports/clearing", "get"),
                    ("/api/v1/reports/liability", "/api/v1/reports/liability", "get"),
                    ("/api/v1/reports/exposure", "/api/v1/reports/exposure", "get"),
                ]
                var answers: [String: JSONValue] = [:]
                for (url, documented, method) in calls {
                    let answer = try client.get(url, token: setup.operatorToken)
                    #expect(answer.status == 200, "\(url): \(answer.body)")
                    guard let json = answer.json, let schema = checker.responseSchema(documented, method, status: 200)
                    else {
                        Issue.record("\(url): no JSON or no documented schema")
                        continue
                    }
                    #expect(checker.problems(json, schema) == [], "\(url)")
                    answers[url] = json
                }
                let posted = try client.request(
                    "POST", "/api/v1/members/search", token: setup.operatorToken,
                    body: Array(#"{"card":"\#(card)"}"#.utf8))
                #expect(posted.status == 200 && posted.json?["balance"] == .int(142))
                let codes = try client.request(
                    "POST", "/api/v1/promo-codes", token: setup.operatorToken,
                    body: Array(#"{"points":50,"count":3}"#.utf8))
                #expect(codes.status == 200)
                if let json = codes.json,
                    let schema = checker.responseSchema("/api/v1/promo-codes", "post", status: 200)
                {
                    #expect(checker.problems(json, schema) == [])
                }
                // Every documented path was exercised here or below.
                #expect(
                    Set(checker.documentedPaths).isSubset(
                        of: Set(calls.map(\.1) + ["/metrics", "/", "/api/v1/members/search", "/api/v1/promo-codes"])))

                // The figures are the walkthrough's: two stores, balance 142, fuel owed 60.
                let stores = answers["/api/v1/stores"]?["stores"]
                #expect(stores?[0]?["name"] == "A" && stores?[1]?["name"] == "B")
                #expect(stores?[0]?["online"] == .bool(true) && stores?[0]?["mergedEntries"]?.intValue ?? 0 > 0)
                let member = answers["/api/v1/members?card=\(card)"]
                #expect(member?["balance"] == 142 && member?["cards"]?[0] == .string(card))
                #expect(member?["monthSpend"] == 410_000 && member?["tier"] == "standard")
                #expect(answers["/api/v1/members?phone=\(phone)"]?["member"] == member?["member"])
                #expect(member?["history"]?[0]?["type"] != nil)
                let transactions = answers["/api/v1/transactions?limit=10"]?["transactions"]
                #expect(transactions?[0]?["type"] == "purchase" && transactions?[0]?["store"] == "B", "newest first")
                // Thresholds from the query: half a year later, with Lost after 90 days, the member is Lost.
                let later = answers["/api/v1/reports/rfm?asOf=2027-06-01&lostDays=90&sleeperDays=30"]
                if case .array(let segments)? = later?["segments"] {
                    #expect(segments.contains { $0["segment"] == "Lost" && $0["members"] == 1 })
                }
                let clearing = answers["/api/v1/reports/clearing?from=2020-01-01&to=2029-12-31"]
                #expect(clearing?["balances"]?["fuel"] == 60 && clearing?["balances"]?["grocer"] == -60)
                let csv = try client.get(
                    "/api/v1/reports/clearing?from=2020-01-01&to=2029-12-31&format=csv", token: setup.operatorToken)
                #expect(csv.contentType.hasPrefix("text/csv") && csv.body.contains("grocer,fuel,60"))

                // Access: no token or a wrong one is 401; a partner sees its own and is refused the rest.
                #expect(try client.get("/api/v1/stores").status == 401)
                #expect(try client.get("/api/v1/stores", token: "lyt_00000000000000000000").status == 401)
                #expect(try client.get("/api/v1/stores", token: "not-a-token").status == 401)
                let own = try client.get("/api/v1/stores", token: setup.grocerToken)
                #expect(own.status == 200 && own.json?["stores"]?[0]?["name"] == "A" && own.json?["stores"]?[1] == nil)
                #expect(try client.get("/api/v1/stores/2", token: setup.grocerToken).status == 403)
                #expect(try client.get("/api/v1/reports/rfm", token: setup.grocerToken).status == 403)
                #expect(
                    try client.get("/api/v1/reports/liability?partner=fuel", token: setup.grocerToken).status == 403)
                let grocerLiability = try client.get("/api/v1/reports/liability", token: setup.grocerToken)
                #expect(grocerLiability.json?["partners"]?[0]?["partner"] == "grocer")
                #expect(grocerLiability.json?["partners"]?[1] == nil)
                let seenByGrocer = try client.get("/api/v1/members?card=\(card)", token: setup.grocerToken).json
                if case .array(let history)? = seenByGrocer?["history"] {
                    #expect(!history.isEmpty && history.allSatisfy { $0["partner"] == "grocer" })
                }
                #expect(
                    try client.request(
                        "POST", "/api/v1/promo-codes", token: setup.grocerToken, body: Array(#"{"points":5}"#.utf8)
                    ).status == 403)
                let revoked = try setup.cluster.runTool(
                    "hub", ["token", "revoke"] + setup.cluster.hubDataArguments + ["--label", "grocer"])
                #expect(revoked.contains("revoked"))
                #expect(try client.get("/api/v1/stores", token: setup.grocerToken).status == 401)

                // Bad input: clear 4xx answers with a JSON error, and the hub keeps serving.
                let token = setup.operatorToken
                let bad: [(String, String, [UInt8]?, Int)] = [
                    ("POST", "/api/v1/members/search", Array(#"{"card": "46"#.utf8), 400),
                    ("POST", "/api/v1/members/search", Array("[1,2]".utf8), 400),
                    ("POST", "/api/v1/members/search", Array(#"{"card":"\#(card)","extra":1}"#.utf8), 400),
                    ("POST", "/api/v1/members/search", [UInt8](repeating: 0x20, count: 200_000), 413),
                    ("POST", "/api/v1/promo-codes", Array(#"{"points":-5}"#.utf8), 400),
                    ("POST", "/api/v1/promo-codes", Array(#"{"points":5,"count":1000000000}"#.utf8), 400),
                    ("GET", "/api/v1/members?card=1%27%20OR%201%3D1%20--", nil, 400),
                    ("GET", "/api/v1/members?phone=%27%3B%20DROP%20TABLE%20members%3B--", nil, 400),
                    ("GET", "/api/v1/members?card=4600000000022", nil, 404),
                    ("GET", "/api/v1/members", nil, 400),
                    ("GET", "/api/v1/stores?unknown=1", nil, 400),
                    ("GET", "/api/v1/stores/abc", nil, 400),
                    ("GET", "/api/v1/stores/999", nil, 404),
                    ("GET", "/api/v1/transactions?limit=1000000", nil, 400),
                    ("GET", "/api/v1/transactions?limit=-1", nil, 400),
                    ("GET", "/api/v1/reports/clearing?from=yesterday&to=2029-12-31", nil, 400),
                    ("GET", "/api/v1/reports/clearing?from=2029-01-01&to=2020-12-31", nil, 400),
                    ("GET", "/api/v1/reports/rfm?format=xml", nil, 400),
                    ("GET", "/api/v1/reports/rfm?lostDays=10&sleeperDays=20", nil, 400),
                    ("GET", "/api/v1/reports/rfm?newcomerDays=-1", nil, 400),
                    ("GET", "/api/v1/stores?limit=1&limit=2", nil, 400),
                ]
                for (method, path, body, status) in bad {
                    let answer = try client.request(method, path, token: token, body: body)
                    #expect(answer.status == status, "\(method) \(path): \(answer.status) \(answer.body.prefix(200))")
                    let schema = checker.resolve(.object(["$ref": "#/components/schemas/Error"]))
                    if let json = answer.json {
                        #expect(checker.problems(json, schema) == [], "\(path)")
                        #expect(!answer.body.contains("SQLITE") && !answer.body.contains("sqlite"), "\(path)")
                    } else {
                        Issue.record("\(method) \(path): not JSON: \(answer.body.prefix(100))")
                    }
                }
                for traversal in ["/../../etc/passwd", "/api/v1/../../hub.sqlite", "/%2e%2e/%2e%2e/etc/passwd"] {
                    let answer = try client.get(traversal, token: token)
                    #expect(answer.status == 404 && !answer.body.contains("root:"), "\(traversal)")
                }
                #expect(try client.get("/healthz").json?["status"] == "ok", "still serving after bad input")
            }
        }

        @Test func metricsExportSessionsMergesAndEachStoresOwnCounters() throws {
            try withConsole { setup in
                let metrics = try setup.client.get("/metrics")
                #expect(metrics.status == 200 && metrics.contentType.hasPrefix("text/plain"))
                for expected in [
                    "hub_sessions 2", #"hub_store_online{store="A",store_id="1"} 1"#,
                    #"hub_merged_entries_total{store="B",store_id="2"}"#, #"hub_rights_grants_total{store="B""#,
                    #"hub_handshakes_total{outcome="accepted"}"#, #"hub_store_last_seen_seconds{store="A""#,
                    #"hub_edge_unsynced_operations{store="A""#, #"hub_edge_offline_seconds{store="B""#,
                    #"hub_merge_lag_seconds{store="A""#,
                ] {
                    #expect(metrics.body.contains(expected), "\(expected)")
                }
                // B was cut off in the walkthrough: its own offline time reached the hub.
                let stores = try setup.client.get("/api/v1/stores", token: setup.operatorToken).json
                #expect(stores?["stores"]?[1]?["edge"]?["offlineMs"]?.intValue ?? 0 > 0)
            }
        }

        @Test func theDashboardShowsStoresTransactionsSegmentsClearingAndAMemberInChromium() throws {
            let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first {
                FileManager.default.isExecutableFile(atPath: $0)
            }
            guard let chromium else {
                Issue.record("chromium is missing: run scripts/bootstrap (make test does) to install it")
                return
            }
            try withConsole { setup in
                let page =
                    "http://127.0.0.1:\(setup.cluster.consolePort)/#token=\(setup.operatorToken)&member=\(Walkthrough.card)"
                func chromiumRun(_ extra: [String]) throws -> String {
                    let process = Process()
                    process.executableURL = URL(fileURLWithPath: chromium)
                    process.arguments =
                        [
                            "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                            "--no-first-run", "--virtual-time-budget=5000", "--window-size=1400,1100",
                            "--user-data-dir=\(FileManager.default.temporaryDirectory.path)/chromium-\(UUID().uuidString)",
                        ] + extra + [page]
                    let output = Pipe()
                    process.standardOutput = output
                    process.standardError = FileHandle.nullDevice
                    try process.run()
                    let data = output.fileHandleForReading.readDataToEndOfFile()
                    process.waitUntilExit()
                    return String(decoding: data, as: UTF8.self)
                }
                let dom = try chromiumRun(["--dump-dom"])
                #expect(dom.contains(#"data-ready="true""#), "the page finished loading")
                #expect(dom.contains(#"data-store="A" data-state="online""#), "store A online")
                #expect(dom.contains(#"data-store="B" data-state="online""#), "store B online")
                #expect(dom.contains(#"data-type="purchase""#), "recent transactions")
                #expect(dom.contains(#"data-segment="Core""#) && dom.contains(#"data-members="1""#), "RFM chart bars")
                #expect(dom.contains(#"data-partner="grocer""#) && dom.contains("fuel owes grocer") == false)
                #expect(dom.contains("grocer owes fuel 60 points"), "the clearing matrix and netting")
                #expect(dom.contains(#"<tr data-field="Balance"><td>Balance</td><td class="num">142</td></tr>"#))
                #expect(dom.contains(#"<p id="message"></p>"#), "no load errors shown")
                let shot = URL(
                    fileURLWithPath: ProcessInfo.processInfo.environment["DASHBOARD_SCREENSHOT"]
                        ?? setup.cluster.workDirectory.appendingPathComponent("dashboard.png").path)
                _ = try chromiumRun(["--screenshot=\(shot.path)"])
                let png = try Data(contentsOf: shot)
                #expect(png.count > 10_000 && png.starts(with: [0x89, 0x50, 0x4E, 0x47]), "a screenshot of the page")
            }
        }
    }
}

extension ProcessClusters {
    /// The chaos harness at small size: real processes behind fault proxies, POS load,
    /// kill -9; after healing, the invariants hold from the nodes' databases.
    @Suite struct ChaosTests {
        @Test func realProcessesUnderFaultsLoseNothingAndConverge() throws {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("chaos-\(UUID().uuidString)")
            let cluster = try LocalCluster(binaries: LocalCluster.locateBinaries(), workDirectory: directory)
            defer {
                cluster.stop()
                try? FileManager.default.removeItem(at: directory)
            }
            var options = Chaos.Options(seed: 5, stores: 3, seconds: 10)
            options.maxFaults = 12
            do {
                let outcome = try Chaos.run(cluster, options) { _ in }
                #expect(outcome.acknowledged > 100)
                #expect(!outcome.faults.isEmpty)
                #expect(
                    outcome.retriesAnswered + outcome.retriesRefused == outcome.unanswered,
                    "every request whose answer was lost got one on retry")
            } catch {
                cluster.dumpLogs()
                throw error
            }
        }
    }
}
