/// The hub's end of a sync session with one store, as a sans-IO state machine. The store's
/// identity comes from the authenticated channel; every entry it pushes must be its own
/// (origin binding). Storage work is asked for as actions; the driver reports back.
public struct HubSession: Sendable {
    public enum Action: Equatable, Sendable {
        case send(SyncMessage)
        /// Look up the highest entry of `origin`'s log the hub holds, then call `highWaterLoaded`.
        case loadHighWater(origin: NodeID)
        /// Merge these entries of the store's log durably, then call `merged` or `mergeRefused`.
        case merge([LogEntry])
        /// Read the feed after `after`, without `excluding`'s own entries, then call
        /// `feedLoaded`. `scopable`: the store reads partner-group feeds (wire 1.3), so the
        /// rules in force decide whether it gets the whole feed or its group's.
        case loadFeed(after: UInt64, limit: Int, excluding: NodeID, scopable: Bool)
        /// Find the member by card or phone hash, serve them to this store from now on, then
        /// call `memberLookedUp`.
        case lookupMember(requestID: UInt32, card: String, phoneHashes: [[UInt8]])
        /// Move up to `points` of the hub's rights to the store, then call `granted`.
        case grant(requestID: UInt32, member: MemberID, account: Account, points: UInt64)
        /// Credit a promo code to the member, then call `promoResolved`.
        case activatePromo(requestID: UInt32, member: MemberID, code: String)
        /// Look up the newest rules document if it is newer than `version`, then call `rulesLoaded`.
        case loadRules(newerThan: UInt64)
        /// Keep the store's own counters for the operator's metrics.
        case recordTelemetry(EdgeTelemetry)
        /// The store is online (after hello and welcome).
        case storeOnline(hubHasUpTo: UInt64)
        /// End the session, logging `reason`.
        case close(reason: String)
    }

    private enum State: Equatable {
        case awaitingHello
        case loadingHighWater
        case ready
        case closed
    }

    /// The store this channel is authenticated as.
    public let store: NodeID
    private var state = State.awaitingHello
    private var pendingRules: (version: UInt64, document: [UInt8])?

    public init(store: NodeID) { self.store = store }

    /// The minor wire version of the store's messages (the driver sets it from each frame).
    public var storeWireMinor: UInt8 = 0

    public var isReady: Bool { state == .ready }

    private mutating func refuse(_ code: SyncErrorCode, _ reason: String) -> [Action] {
        state = .closed
        return [.send(.error(code: code, message: reason)), .close(reason: reason)]
    }

    public mutating func received(_ message: SyncMessage) -> [Action] {
        switch (state, message) {
        case (.closed, _):
            return []
        case (.awaitingHello, .hello(let version, let node, _, let rulesVersion)):
            guard version == syncProtocolVersion else {
                return refuse(
                    .unsupportedVersion, "store speaks protocol version \(version), hub speaks \(syncProtocolVersion)")
            }
            guard node == store else {
                return refuse(.refusedEntry, "channel is authenticated as \(store) but the hello says \(node)")
            }
            state = .loadingHighWater
            return [.loadHighWater(origin: store), .loadRules(newerThan: rulesVersion)]
        case (.ready, .push(let entries)):
            for entry in entries {
                guard entry.origin == store else {
                    return refuse(
                        .refusedEntry, EntryError.wrongOrigin(claimed: entry.origin, authenticated: store).description)
                }
                do { try entry.validateOrigin() } catch { return refuse(.refusedEntry, error.description) }
            }
            return [.merge(entries)]
        case (.ready, .pull(let after, let limit)):
            return [
                .loadFeed(
                    after: after, limit: Int(min(limit, UInt32(SyncMessage.maxBatch))), excluding: store,
                    scopable: storeWireMinor >= 3)
            ]
        case (.ready, .memberLookup(let requestID, let card, let hashes)):
            return [.lookupMember(requestID: requestID, card: card, phoneHashes: hashes)]
        case (.ready, .rightsRequest(let requestID, let member, let account, let points)):
            return [.grant(requestID: requestID, member: member, account: account, points: points)]
        case (.ready, .promoRequest(let requestID, let member, let code)):
            return [.activatePromo(requestID: requestID, member: member, code: code)]
        case (.ready, .telemetry(let counters)):
            return [.recordTelemetry(counters)]
        case (.ready, .hello(let version, let node, _, _)) where version == syncProtocolVersion && node == store:
            state = .loadingHighWater  // a repeated hello: answer it again
            return [.loadHighWater(origin: store)]
        case (.loadingHighWater, .hello):
            return []
        case (.awaitingHello, _), (.loadingHighWater, _):
            return []  // nothing is served before the hello
        case (_, .error(let code, let text)):
            state = .closed
            return [.close(reason: "store reported an error (\(code)): \(text)")]
        default:
            return refuse(.unexpected, "unexpected message at this point of the session")
        }
    }

    public mutating func highWaterLoaded(_ high: UInt64) -> [Action] {
        guard state == .loadingHighWater else { return [] }
        state = .ready
        var actions: [Action] = [
            .storeOnline(hubHasUpTo: high), .send(.welcome(version: syncProtocolVersion, originHighWater: high)),
        ]
        if let (version, document) = pendingRules {
            pendingRules = nil
            actions.append(.send(.rules(version: version, document: document)))
        }
        return actions
    }

    /// The newest rules document, if newer than the store's; sent once the session is ready.
    public mutating func rulesLoaded(version: UInt64, document: [UInt8]?) -> [Action] {
        guard let document, state == .ready || state == .loadingHighWater else { return [] }
        if state == .ready { return [.send(.rules(version: version, document: document))] }
        pendingRules = (version, document)
        return []
    }

    public mutating func merged(upTo high: UInt64) -> [Action] {
        state == .ready ? [.send(.ack(upTo: high))] : []
    }

    public mutating func mergeRefused(_ reason: String) -> [Action] {
        state == .closed ? [] : refuse(.refusedEntry, reason)
    }

    public mutating func feedLoaded(
        _ entries: [FeedEntry], upTo: UInt64, more: Bool, snapshots: [MemberSnapshot]? = nil
    ) -> [Action] {
        state == .ready ? [.send(.changes(entries: entries, upTo: upTo, more: more, snapshots: snapshots))] : []
    }

    public mutating func memberLookedUp(requestID: UInt32, snapshots: [MemberSnapshot]) -> [Action] {
        state == .ready ? [.send(.memberFound(requestID: requestID, snapshots: snapshots))] : []
    }

    public mutating func promoResolved(requestID: UInt32, points: UInt64, entry: LogEntry?, refusal: String?)
        -> [Action]
    {
        state == .ready
            ? [.send(.promoResult(requestID: requestID, points: points, entry: entry, refusal: refusal))] : []
    }

    public mutating func granted(requestID: UInt32, granted: UInt64, entry: LogEntry?) -> [Action] {
        state == .ready ? [.send(.rightsGrant(requestID: requestID, granted: granted, entry: entry))] : []
    }

    /// Storage failed on the hub's side: tell the store and end the session.
    public mutating func failed(_ reason: String) -> [Action] {
        state == .closed ? [] : refuse(.internalError, reason)
    }
}
