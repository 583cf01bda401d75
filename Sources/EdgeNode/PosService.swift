import Logging
import NodeKit
import SyncProtocol

/// The POS API: JSON-RPC 2.0 methods, dispatched on the loop thread; storage work goes to
/// the writer thread, rights requests to the uplink.
final class PosService {
    private let writer: DatabaseWriter
    private let ledger: EdgeLedger
    private let uplink: Uplink
    private let loop: EventLoop
    private let logger: Logger
    private let startedAt: UInt64

    init(loop: EventLoop, writer: DatabaseWriter, ledger: EdgeLedger, uplink: Uplink, logger: Logger) {
        self.loop = loop
        self.writer = writer
        self.ledger = ledger
        self.uplink = uplink
        self.logger = logger
        startedAt = loop.nowMilliseconds
    }

    /// How long the last requests of each method took, from their line being read to their
    /// answer being written (node.status `latency`). Methods the node knows only (an unknown
    /// one is answered methodNotFound and not timed), so made-up names cannot grow this.
    private var latency: [String: LatencyWindow] = [:]

    /// POS connections attached to lanes, which receive that lane's scans as notifications.
    private var attached: [String: [ObjectIdentifier: (String) -> Void]] = [:]

    /// Forgets a closed connection.
    func detach(_ connection: ObjectIdentifier) {
        for lane in attached.keys { attached[lane]?[connection] = nil }
    }

    /// A scanner read `code` on `lane`: identify the member and tell that lane's POS.
    func scan(lane: String, code: String) {
        let notify: (JSONValue) -> Void = { [weak self] message in
            guard let self else { return }
            let targets = self.attached[lane] ?? [:]
            if targets.isEmpty {
                self.logger.notice("scan on a lane with no attached POS", metadata: ["lane": "\(lane)"])
            }
            for send in targets.values { send(message.jsonLine) }
        }
        let card: CardNumber
        do { card = try ScanCode.card(fromScan: code) } catch {
            notify(
                Self.notification(
                    "scan.refused", lane: lane, ["error": Self.errorBody(.invalidCard(error.description))]))
            return
        }
        let ledger = self.ledger
        let answer: Completion = { result in
            switch result {
            case .success(let member): notify(Self.notification("scan.identified", lane: lane, ["member": member]))
            case .failure(let error):
                notify(Self.notification("scan.refused", lane: lane, ["error": Self.errorBody(error)]))
            }
        }
        withLookup(card: card.digits, phone: nil, answer) { [self] done in
            run(done) { db in try ledger.identify(db, card: card.digits, phone: nil).json }
        }
    }

    static func notification(_ method: String, lane: String, _ fields: [String: JSONValue]) -> JSONValue {
        var params = fields
        params["lane"] = .string(lane)
        return .object(["jsonrpc": .string("2.0"), "method": .string(method), "params": .object(params)])
    }

    static func errorBody(_ error: PosError) -> JSONValue {
        var body: [String: JSONValue] = ["code": .int(Int64(error.code)), "message": .string(error.message)]
        if let data = error.data { body["data"] = data }
        return .object(body)
    }

    /// Handles one request line from `connection`; `reply` gets the response line (nothing
    /// for notifications) and, once attached to a lane, that lane's scans.
    func handle(
        line: [UInt8], connection: ObjectIdentifier, reply: @escaping (String) -> Void, finished: @escaping () -> Void
    ) {
        let received = monotonicNanoseconds()
        // Parsed once here; every method but lane.attach goes on with the parsed request.
        guard let request = try? JSONValue.parse(line) else {
            handle(line: line, reply: reply, finished: finished)
            return
        }
        if request["method"] == .string("lane.attach") {
            defer { finished() }
            guard let lane = try? Params.string(request["params"] ?? .null, "lane") else {
                reply(Self.response(id: request["id"] ?? .null, error: .invalidParams("lane.attach needs a 'lane'")))
                return
            }
            attached[lane, default: [:]][connection] = reply
            if let id = request["id"] { reply(Self.response(id: id, result: .object(["lane": .string(lane)]))) }
            return
        }
        handle(request: request, received: received, reply: reply, finished: finished)
    }

    /// Handles one request line; `reply` gets the response line (nothing for notifications);
    /// `finished` runs once the request is done, answered or not.
    func handle(line: [UInt8], reply: @escaping (String) -> Void, finished: @escaping () -> Void = {}) {
        let received = monotonicNanoseconds()
        let request: JSONValue
        do { request = try JSONValue.parse(line) } catch {
            reply(Self.response(id: .null, error: .parseError("the line is not JSON")))
            finished()
            return
        }
        handle(request: request, received: received, reply: reply, finished: finished)
    }

    /// `received`: when the request's line arrived (monotonicNanoseconds), for its latency.
    private func handle(
        request: JSONValue, received: UInt64, reply: @escaping (String) -> Void, finished: @escaping () -> Void
    ) {
        guard case .object(let fields) = request, fields["jsonrpc"] == .string("2.0"),
            let method = fields["method"]?.stringValue
        else {
            reply(
                Self.response(
                    id: request["id"] ?? .null, error: .invalidRequest("expected a JSON-RPC 2.0 request object")))
            finished()
            return
        }
        let id = fields["id"]
        let params = fields["params"] ?? .object([:])
        guard case .object = params else {
            reply(Self.response(id: id ?? .null, error: .invalidParams("params must be an object")))
            finished()
            return
        }
        dispatch(method: method, params: params) { [weak self] result in
            defer { finished() }
            guard let id else { return }  // a notification gets no answer
            switch result {
            case .success(let value): reply(Self.response(id: id, result: value))
            case .failure(let error): reply(Self.response(id: id, error: error))
            }
            if case .failure(let error) = result, error.code == PosError.methodNotFoundCode { return }
            guard let self else { return }
            self.latency[method, default: LatencyWindow()].record(nanoseconds: monotonicNanoseconds() - received)
        }
    }

    static func response(id: JSONValue, result: JSONValue) -> String {
        JSONValue.object(["jsonrpc": .string("2.0"), "id": id, "result": result]).jsonLine
    }

    static func response(id: JSONValue, error: PosError) -> String {
        JSONValue.object(["jsonrpc": .string("2.0"), "id": id, "error": errorBody(error)]).jsonLine
    }

    private typealias Completion = (Result<JSONValue, PosError>) -> Void

    private func dispatch(method: String, params: JSONValue, _ done: @escaping Completion) {
        do {
            switch method {
            case "member.identify":
                var card = try Params.optionalString(params, "card")
                if let code = try Params.optionalString(params, "code") {
                    do { card = try ScanCode.card(fromScan: code).digits } catch {
                        throw PosError.invalidCard(error.description)
                    }
                }
                let phone = try Params.optionalString(params, "phone")
                withLookup(card: card, phone: phone, done) { [self, card] done in
                    run(done) { [ledger] db in try ledger.identify(db, card: card, phone: phone).json }
                }
            case "member.register":
                let card = try Params.string(params, "card")
                let phone = try Params.optionalString(params, "phone")
                let referrer = try Params.optionalString(params, "referrer")
                run(done, kick: true) { [ledger] db in
                    try ledger.register(db, card: card, phone: phone, referrer: referrer).json
                }
            case "account.balance":
                let card = try Params.string(params, "card")
                withLookup(card: card, phone: nil, done) { [self] done in
                    run(done) { [ledger] db in try ledger.identify(db, card: card, phone: nil).json }
                }
            case "checkout.purchase":
                let request = try Params.purchase(params)
                let counted: Completion = { [uplink] result in
                    if case .failure(let error) = result, error.code == PosError.insufficientPointsCode {
                        uplink.redemptionsRefused += 1
                    }
                    done(result)
                }
                withLookup(card: request.card, phone: nil, counted) { [self] done in
                    purchase(request, grant: [], hubRounds: 2, done)
                }
            case "checkout.quote":
                let card = try Params.string(params, "card")
                let amount = try Params.amount(params, "amount")
                let redeem = try Params.amount(params, "redeem", default: 0)
                let connectivity = uplink.connectivity
                withLookup(card: card, phone: nil, done) { [self] done in
                    run(done) { [ledger] db in
                        try ledger.quote(
                            db, card: card, amountMinor: amount, redeemPoints: redeem, connectivity: connectivity
                        )
                        .json
                    }
                }
            case "checkout.refund":
                let request = try Params.refund(params)
                run(done, kick: true) { [ledger] db in try ledger.refund(db, request).json }
            case "node.status":
                status(done)
            case "promo.activate":
                let card = try Params.string(params, "card")
                let code = try Params.string(params, "code")
                guard uplink.online else { throw PosError.hubUnreachable("activating a promo code") }
                withLookup(card: card, phone: nil, done) { [self] done in activatePromo(card: card, code: code, done) }
            default:
                throw PosError.methodNotFound(method)
            }
        } catch let error as PosError {
            done(.failure(error))
        } catch {
            done(.failure(.invalidParams("\(error)")))
        }
    }

    /// Runs `attempt`; when it finds no such member here and the hub can be asked, fetches
    /// the member from the hub (a partner-group store holds only its group's members, and
    /// any store may be behind the feed), applies what the hub holds and tries once more.
    /// Offline, or when the hub knows nobody either, the first answer stands.
    private func withLookup(
        card: String?, phone: String?, _ done: @escaping Completion, _ attempt: @escaping (@escaping Completion) -> Void
    ) {
        attempt { [self] result in
            guard case .failure(let error) = result, error.code == PosError.unknownMemberCode,
                uplink.canLookUpMembers
            else {
                done(result)
                return
            }
            let digits = card.map { (try? CardNumber($0))?.digits ?? $0 } ?? ""
            let hashes = phone.flatMap { try? ledger.phoneHashes($0) } ?? []
            uplink.lookupMember(card: digits, phoneHashes: hashes) { [self] found in
                guard case .success(let snapshots) = found, !snapshots.isEmpty else {
                    done(result)
                    return
                }
                let ledger = self.ledger
                writer.submit({ db in try ledger.applySnapshots(db, snapshots) }) { [logger] applied in
                    if case .failure(let error) = applied {
                        logger.error("cannot store a member from the hub", metadata: ["error": "\(error)"])
                        done(.failure(.storage("\(error)")))
                        return
                    }
                    attempt(done)
                }
            }
        }
    }

    /// Runs a ledger call on the writer and maps its errors to POS errors.
    private func run(
        _ done: @escaping Completion, kick: Bool = false,
        _ work: @escaping @Sendable (any SQLDatabase) throws -> JSONValue
    ) {
        writer.submit(work) { [uplink, logger] result in
            switch result {
            case .success(let value):
                if kick { uplink.kick() }
                done(.success(value))
            case .failure(let error as PosError):
                done(.failure(error))
            case .failure(let error):
                logger.error("storage failure", metadata: ["error": "\(error)"])
                done(.failure(.storage("\(error)")))
            }
        }
    }

    /// Runs a purchase; when it needs rights held elsewhere and the hub is reachable, asks
    /// the hub (at most `hubRounds` times: once per account) and retries with the grants.
    private func purchase(
        _ request: PurchaseRequest, grant: [SlotWrite], hubRounds: Int, _ done: @escaping Completion
    ) {
        let ledger = self.ledger
        let connectivity = uplink.connectivity
        writer.submit({ db in try ledger.purchase(db, request, grant: grant, connectivity: connectivity) }) {
            [self] result in
            switch result {
            case .success(.completed(let receipt)):
                uplink.kick()
                done(.success(receipt.json))
            case .success(.needsRights(let member, let account, let shortfall, let redeemable)):
                let requested = account == .promo ? request.redeemPromoPoints : request.redeemPoints
                guard hubRounds > 0, uplink.online else {
                    done(
                        .failure(
                            .insufficientPoints(requested: requested, redeemable: redeemable, online: uplink.online)))
                    return
                }
                uplink.requestRights(member: member, account: account, points: shortfall) { [self] granted in
                    switch granted {
                    case .success(let writes):
                        purchase(request, grant: grant + writes, hubRounds: hubRounds - 1, done)
                    case .failure:
                        done(.failure(.insufficientPoints(requested: requested, redeemable: redeemable, online: false)))
                    }
                }
            case .failure(let error as PosError):
                done(.failure(error))
            case .failure(let error):
                logger.error("purchase failed in storage", metadata: ["error": "\(error)"])
                done(.failure(.storage("\(error)")))
            }
        }
    }

    /// Finds the member, has the hub credit the code (single-use coalition-wide), applies the
    /// hub's entry here and answers with the promo balance.
    private func activatePromo(card: String, code: String, _ done: @escaping Completion) {
        let ledger = self.ledger
        writer.submit({ db in try ledger.memberID(db, card: card) }) { [self] found in
            switch found {
            case .failure(let error as PosError): done(.failure(error))
            case .failure(let error): done(.failure(.storage("\(error)")))
            case .success(let member):
                uplink.requestPromo(member: member.id, code: code) { [self] credited in
                    switch credited {
                    case .failure(let error): done(.failure(error))
                    case .success(let (points, writes)):
                        run(done) { db in
                            try CounterSlots.apply(db, writes)
                            var view = try ledger.identify(db, card: card, phone: nil).json
                            if case .object(var fields) = view {
                                fields["pointsCredited"] = .int(Int64(points))
                                view = .object(fields)
                            }
                            return view
                        }
                    }
                }
            }
        }
    }

    private func status(_ done: @escaping Completion) {
        let ledger = self.ledger
        let connectivity = uplink.connectivity
        writer.submit({ db in try ledger.status(db, connectivity: connectivity) }) { [self] result in
            switch result {
            case .success(let status):
                let now = loop.nowMilliseconds
                var fields: [String: JSONValue] = [
                    "node": .int(Int64(ledger.node.rawValue)),
                    "online": .bool(uplink.online),
                    "lastSequence": .int(Int64(status.lastSequence)),
                    "acknowledgedSequence": .int(Int64(status.acknowledgedSequence)),
                    "unsyncedOperations": .int(
                        Int64(status.lastSequence - min(status.lastSequence, status.acknowledgedSequence))),
                    "feedWatermark": .int(Int64(status.feedWatermark)),
                    "members": .int(status.members),
                    "replica": .string(status.partial ? "partner-group" : "whole"),
                    "uptimeMs": .int(Int64(now - startedAt)),
                ]
                if let since = uplink.offlineSince { fields["offlineForMs"] = .int(Int64(now - since)) }
                if let contact = uplink.lastContact { fields["syncLagMs"] = .int(Int64(now - contact)) }
                let writes = writer.statistics
                let checkpoints = writer.checkpointStatistics
                fields["writer"] = .object([
                    "transactions": .int(Int64(writes.transactions)), "jobs": .int(Int64(writes.jobs)),
                    "busyMs": .int(Int64(writes.busyNanoseconds / 1_000_000)),
                    "commitMs": .int(Int64(writes.commitNanoseconds / 1_000_000)),
                    "checkpoints": .int(Int64(checkpoints.checkpoints)),
                    "checkpointMs": .int(Int64(checkpoints.nanoseconds / 1_000_000)),
                    "walFrames": .int(checkpoints.walFrames),
                ])
                fields["latency"] = .object(
                    latency.compactMapValues { window -> JSONValue? in
                        guard let ms = window.percentiles([0.5, 0.99, 1]) else { return nil }
                        return .object([
                            "requests": .int(Int64(window.count)), "total": .int(Int64(window.total)),
                            "p50Ms": .double(Double(ms[0]) / 1_000), "p99Ms": .double(Double(ms[1]) / 1_000),
                            "maxMs": .double(Double(ms[2]) / 1_000),
                        ])
                    })
                let resume = uplink.resumePosition
                fields["sync"] = .object([
                    "hubHasUpTo": .int(Int64(resume.hubHasUpTo)), "feedWatermark": .int(Int64(resume.feedWatermark)),
                    "reconnectAttempts": .int(Int64(uplink.reconnectAttempts)),
                ])
                fields["exposure"] = .object([
                    "outagePoints": .int(Int64(status.exposure.storePoints)),
                    "outageRedemptions": .int(Int64(status.exposure.storeCount)),
                    "totalPoints": .int(Int64(status.exposureTotalPoints)),
                    "totalRedemptions": .int(Int64(status.exposureTotalCount)),
                ])
                done(.success(.object(fields)))
            case .failure(let error):
                done(.failure(.storage("\(error)")))
            }
        }
    }
}

/// Reading typed parameters out of a JSON-RPC params object, with clear errors.
enum Params {
    static func string(_ params: JSONValue, _ name: String) throws -> String {
        guard let value = try optionalString(params, name) else { throw PosError.invalidParams("missing '\(name)'") }
        return value
    }

    static func optionalString(_ params: JSONValue, _ name: String) throws -> String? {
        switch params[name] {
        case nil, .null?: return nil
        case .string(let text)?:
            guard !text.isEmpty, text.utf8.count <= 64 else {
                throw PosError.invalidParams("'\(name)' must be 1 to 64 characters")
            }
            return text
        default: throw PosError.invalidParams("'\(name)' must be a string")
        }
    }

    static func amount(_ params: JSONValue, _ name: String, default fallback: UInt64? = nil) throws -> UInt64 {
        switch params[name] {
        case nil, .null?:
            guard let fallback else { throw PosError.invalidParams("missing '\(name)'") }
            return fallback
        case .int(let value)?:
            guard value >= 0 else { throw PosError.invalidAmount("'\(name)' must not be negative") }
            return UInt64(value)
        case .double?:
            throw PosError.invalidAmount("'\(name)' must be a whole number (minor units or whole points) in range")
        default: throw PosError.invalidParams("'\(name)' must be an integer")
        }
    }

    static func refund(_ params: JSONValue) throws -> RefundRequest {
        var store: NodeID?
        if let raw = params["originalStore"], raw != .null {
            guard let number = raw.intValue, number > 0, number <= Int64(UInt32.max) else {
                throw PosError.invalidParams("'originalStore' must be a store id (a positive integer)")
            }
            store = NodeID(UInt32(number))
        }
        let amount: UInt64? =
            params["amount"] == nil || params["amount"] == .null ? nil : try Params.amount(params, "amount")
        return RefundRequest(
            lane: try string(params, "lane"), receipt: try string(params, "receipt"), originalStore: store,
            originalLane: try string(params, "originalLane"), originalReceipt: try string(params, "originalReceipt"),
            amountMinor: amount)
    }

    static func purchase(_ params: JSONValue) throws -> PurchaseRequest {
        PurchaseRequest(
            card: try string(params, "card"), amountMinor: try amount(params, "amount"),
            redeemPoints: try amount(params, "redeem", default: 0), lane: try string(params, "lane"),
            receipt: try string(params, "receipt"), redeemPromoPoints: try amount(params, "redeemPromo", default: 0))
    }
}
