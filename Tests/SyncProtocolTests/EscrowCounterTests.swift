import Testing

@testable import SyncProtocol

private let hub = NodeID.hub
private let storeA = NodeID(1)
private let storeB = NodeID(2)

@Suite struct EscrowCounterTests {
    @Test func balanceIsEarnedMinusSpent() throws {
        var counter = EscrowCounter()
        _ = try counter.earn(at: storeA, 100)
        _ = try counter.earn(at: storeB, 30)
        _ = try counter.redeem(at: storeA, 40)
        #expect(counter.balance == 90)
        #expect(counter.rights(storeA) == 60)
        #expect(counter.rights(storeB) == 30)
    }

    @Test func redeemingBeyondRightsIsRefusedWithWhatIsRedeemable() throws {
        var counter = EscrowCounter()
        _ = try counter.earn(at: storeA, 100)
        #expect(throws: CounterError.insufficientRights(requested: 10, redeemable: 0)) {
            _ = try counter.redeem(at: storeB, 10)
        }
        #expect(throws: CounterError.insufficientRights(requested: 101, redeemable: 100)) {
            _ = try counter.redeem(at: storeA, 101)
        }
    }

    @Test func allowanceLetsAStoreRedeemBeyondItsRights() throws {
        var counter = EscrowCounter()
        _ = try counter.earn(at: storeA, 100)
        _ = try counter.redeem(at: storeB, 10, allowance: 10)
        #expect(counter.balance == 90)
        #expect(counter.redeemable(at: storeB, allowance: 10) == 0)
    }

    @Test func movedRightsFollowTheMove() throws {
        var counter = EscrowCounter()
        _ = try counter.earn(at: storeA, 100)
        _ = try counter.move(by: storeA, to: hub, 100)
        _ = try counter.move(by: hub, to: storeB, 40)
        #expect(counter.rights(storeA) == 0)
        #expect(counter.rights(hub) == 60)
        #expect(counter.rights(storeB) == 40)
        _ = try counter.redeem(at: storeB, 40)
        #expect(counter.balance == 60)
    }

    @Test func rightsAmongNodesAddUpTheirRightsAndCoverTheBalanceOverEveryHolder() throws {
        var counter = EscrowCounter()
        let storeC = NodeID(3)
        _ = try counter.earn(at: storeA, 100)
        _ = try counter.earn(at: storeC, 7)
        _ = try counter.move(by: storeA, to: hub, 70)
        _ = try counter.move(by: hub, to: storeB, 40)
        _ = try counter.redeem(at: storeB, 15, allowance: 0)
        for nodes in [
            [], [storeA], [hub, storeB], [storeA, storeB], [hub, storeA, storeB], [hub, storeA, storeB, storeC],
        ] {
            #expect(
                counter.rights(among: Set(nodes)) == nodes.reduce(0) { $0 + counter.rights($1) }, "among \(nodes)")
        }
        #expect(counter.rights(among: [hub, storeA, storeB, storeC]) == counter.balance)
        // A holder left out: what it holds is missing from the sum.
        #expect(counter.rights(among: [hub, storeA, storeB]) == counter.balance - 7)
    }

    @Test func onlyTheHolderCanMoveRights() throws {
        var counter = EscrowCounter()
        _ = try counter.earn(at: storeA, 100)
        #expect(throws: CounterError.insufficientRights(requested: 50, redeemable: 0)) {
            _ = try counter.move(by: storeB, to: hub, 50)
        }
    }

    @Test func amountsThatOverflowAreRefused() throws {
        var counter = EscrowCounter()
        _ = try counter.earn(at: storeA, UInt64(Int64.max) - 1)
        #expect(throws: CounterError.overflow) { _ = try counter.earn(at: storeA, 10) }
        #expect(throws: CounterError.nonPositiveAmount) { _ = try counter.earn(at: storeA, 0) }
    }

    @Test func applyKeepsTheLargerValue() {
        var counter = EscrowCounter()
        let raised = counter.apply(.earned(storeA), 50)
        let lowered = counter.apply(.earned(storeA), 20)
        #expect(raised)
        #expect(!lowered)
        #expect(counter[.earned(storeA)] == 50)
    }

    /// Random operations at random nodes, merged in random orders with duplicates: every
    /// order gives the same state, and the balance is Σearned − Σspent.
    @Test(arguments: [1, 2, 3, 42, 1234] as [UInt64])
    func mergeIsCommutativeAssociativeAndIdempotent(seed: UInt64) throws {
        var random = SplitMix(seed: seed)
        let nodes = [hub, storeA, storeB, NodeID(3)]
        var replicas = nodes.map { _ in EscrowCounter() }
        for _ in 0..<200 {
            let index = Int(random.next() % UInt64(nodes.count))
            let node = nodes[index]
            switch random.next() % 4 {
            case 0, 1: _ = try replicas[index].earn(at: node, random.next() % 50 + 1)
            case 2:
                let amount = random.next() % 30 + 1
                if replicas[index].redeemable(at: node) >= amount { _ = try replicas[index].redeem(at: node, amount) }
            default:
                let target = nodes[Int(random.next() % UInt64(nodes.count))]
                let held = replicas[index].rights(node)
                if held > 0, target != node { _ = try replicas[index].move(by: node, to: target, UInt64(held)) }
            }
            // Occasionally gossip one replica into another.
            if random.next() % 3 == 0 {
                let from = Int(random.next() % UInt64(nodes.count))
                replicas[index].merge(replicas[from])
            }
        }
        var forward = EscrowCounter()
        for replica in replicas { forward.merge(replica) }
        var backward = EscrowCounter()
        for replica in replicas.reversed() {
            backward.merge(replica)
            backward.merge(replica)
        }
        var grouped = replicas[0]
        var rest = replicas[2]
        rest.merge(replicas[3])
        rest.merge(replicas[1])
        grouped.merge(rest)
        #expect(forward == backward)
        #expect(forward == grouped)
        let earned = forward.slots.filter { $0.key.kind == .earned }.reduce(Int64(0)) { $0 + Int64($1.value) }
        let spent = forward.slots.filter { $0.key.kind == .spent }.reduce(Int64(0)) { $0 + Int64($1.value) }
        #expect(forward.balance == earned - spent)
        #expect(forward.balance >= 0)
        let rights = nodes.reduce(Int64(0)) { $0 + forward.rights($1) }
        #expect(rights == forward.balance, "rights are conserved: they sum to the balance")
    }
}

/// A small seeded PRNG so failures reproduce.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
