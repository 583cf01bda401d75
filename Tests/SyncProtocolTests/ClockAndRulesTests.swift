import Testing

@testable import SyncProtocol

@Suite struct HybridLogicalClockTests {
    @Test func stampsNeverGoBackwardsWhenTheWallClockDoes() throws {
        var clock = HybridLogicalClock()
        let first = try clock.now(wall: 10_000)
        let second = try clock.now(wall: 9_000)
        let third = try clock.now(wall: 9_500)
        #expect(first < second && second < third)
        #expect(third.milliseconds == 10_000 && third.logical == 2)
    }

    @Test func observingARemoteStampOrdersLaterEventsAfterIt() throws {
        var clock = HybridLogicalClock()
        _ = try clock.now(wall: 1_000)
        let remote = HLCTimestamp(milliseconds: 5_000, logical: 7)
        try clock.observe(remote, wall: 1_100)
        let next = try clock.now(wall: 1_200)
        #expect(next > remote)
    }

    @Test func aRemoteStampTooFarAheadIsRefusedAndDoesNotDragTheClock() throws {
        var clock = HybridLogicalClock(maxForwardDriftMilliseconds: 1_000)
        _ = try clock.now(wall: 1_000)
        let remote = HLCTimestamp(milliseconds: 100_000, logical: 0)
        #expect(throws: ClockError.self) { try clock.observe(remote, wall: 1_000) }
        #expect(clock.last.milliseconds == 1_000)
    }

    @Test func stampPacksFortyEightBitsOfMillisecondsAndSixteenLogical() {
        let stamp = HLCTimestamp(milliseconds: 0xFFFF_FFFF_FFFF, logical: 0xABCD)
        #expect(stamp.milliseconds == 0xFFFF_FFFF_FFFF)
        #expect(stamp.logical == 0xABCD)
    }
}

@Suite struct CardAndRulesTests {
    @Test func validEAN13IsAccepted() throws {
        #expect(try CardNumber("4600000000015").digits == "4600000000015")
        #expect(try CardNumber("4006381333931").digits == "4006381333931")
    }

    @Test func phoneNumbersAreE164AndHashUnderAKey() {
        #expect(PhoneNumber("+4915112345678")?.digits == "4915112345678")
        for bad in [
            "4915112345678", "+49 151 1234", "+1234567", "+1234567890123456", "", "+49151123456a", "+",
            "+4915112345\u{FF16}78", "+491511234567\u{0301}8", "++4915112345678", "+4915112345678\n",
        ] {
            #expect(PhoneNumber(bad) == nil, "\(bad)")
        }
        let hub = SigningKeyPair.fromSeed([UInt8](repeating: 3, count: 32)).publicKey
        let phone = PhoneNumber("+4915112345678")!
        #expect(
            phone.hash(key: PhoneNumber.provisionalKey(hub: hub))
                == phone.hash(key: PhoneNumber.provisionalKey(hub: hub)))
        #expect(
            phone.hash(key: PhoneNumber.provisionalKey(hub: hub))
                != PhoneNumber("+4915112345679")!.hash(key: PhoneNumber.provisionalKey(hub: hub)))
    }

    @Test func issuedCardsCarryTheirSerialAndAValidCheckDigit() throws {
        #expect(CardNumber.issued(prefix: "46", serial: 1).digits == "4600000000015")
        for serial in [0, 7, 99_999, 9_999_999_999] {
            let card = CardNumber.issued(prefix: "47", serial: serial)
            #expect(try CardNumber(card.digits) == card && card.digits.hasPrefix("47"))
            #expect(Int(card.digits.dropFirst(2).prefix(10)) == serial)
        }
    }

    @Test func wrongCheckDigitIsRefusedWithTheExpectedDigit() {
        #expect(throws: CardError.badCheckDigit("4600000000017", expected: 5)) { try CardNumber("4600000000017") }
        #expect(throws: CardError.notThirteenDigits("12345")) { try CardNumber("12345") }
        #expect(throws: CardError.notThirteenDigits("46000000000a5")) { try CardNumber("46000000000a5") }
    }

    @Test func accrualAndRedemptionFollowThePartnerRules() {
        let rules = PartnerRules(accrualBasisPoints: 500, minorUnitsPerPoint: 100, maxRedeemBasisPoints: 3000)
        #expect(rules.pointsEarned(paidMinor: 200_000) == 100)
        #expect(rules.pointsEarned(paidMinor: 1_999) == 0, "rounds down")
        #expect(rules.maxRedeemablePoints(amountMinor: 100_000) == 300)
        #expect(rules.paidMinor(amountMinor: 100_000, redeemedPoints: 40) == 96_000)
        #expect(rules.paidMinor(amountMinor: 100, redeemedPoints: 40) == 0)
    }

    @Test func onePointPerHundredRoubles() {
        // 1 point per 100 roubles: 1 % of the check at 1.00 per point.
        let rules = PartnerRules(accrualBasisPoints: 100, minorUnitsPerPoint: 100)
        #expect(rules.pointsEarned(paidMinor: 10_000) == 1)
        #expect(rules.pointsEarned(paidMinor: 1_234_500) == 123)
    }

    @Test func hugeAmountsDoNotOverflow() {
        let rules = PartnerRules(accrualBasisPoints: 10_000, minorUnitsPerPoint: 1)
        #expect(rules.pointsEarned(paidMinor: UInt64.max) == UInt64.max)
        #expect(mulDiv(UInt64.max, 3, 4) == UInt64.max / 4 * 3 + 2)
    }
}

@Suite struct ScanCodeTests {
    @Test func barcodesAndQRPayloadsYieldTheCardNumber() throws {
        #expect(try ScanCode.card(fromScan: "4600000000015\r").digits == "4600000000015")
        #expect(try ScanCode.card(fromScan: "LOYALTY:4600000000015").digits == "4600000000015")
        #expect(try ScanCode.card(fromScan: "loyalty:4006381333931").digits == "4006381333931")
    }

    @Test func badScansAreRefusedClearly() {
        #expect(throws: ScanCode.Failure.card(.badCheckDigit("4600000000017", expected: 5))) {
            try ScanCode.card(fromScan: "LOYALTY:4600000000017")
        }
        #expect(throws: ScanCode.Failure.unknownFormat("https://example.org/promo")) {
            try ScanCode.card(fromScan: "https://example.org/promo")
        }
        #expect(throws: ScanCode.Failure.card(.notThirteenDigits("12"))) { try ScanCode.card(fromScan: "LOYALTY:12") }
    }
}

/// The brief's worked examples, table-driven: (rules, check, points redeemed) → (paid, earned).
@Suite struct WorkedExampleTests {
    static let onePointPerHundredRoubles = PartnerRules(
        accrualBasisPoints: 100, minorUnitsPerPoint: 100, maxRedeemBasisPoints: 3000)

    static let cases: [(name: String, amount: UInt64, redeem: UInt64, paid: UInt64, earned: UInt64)] = [
        ("1 point per 100 roubles: 1,000.00 earns 10", 100_000, 0, 100_000, 10),
        ("99.99 earns nothing (rounding down)", 9_999, 0, 9_999, 0),
        ("100 points buy 10 % off a 1,000.00 check", 100_000, 100, 90_000, 9),
        ("300 points, the 30 % cap of 1,000.00", 100_000, 300, 70_000, 7),
    ]

    @Test(arguments: cases)
    func checkoutFollowsTheProgrammesExamples(
        name: String, amount: UInt64, redeem: UInt64, paid: UInt64, earned: UInt64
    ) {
        let rules = Self.onePointPerHundredRoubles
        #expect(redeem <= rules.maxRedeemablePoints(amountMinor: amount), "\(name)")
        #expect(rules.paidMinor(amountMinor: amount, redeemedPoints: redeem) == paid, "\(name)")
        #expect(rules.pointsEarned(paidMinor: paid) == earned, "\(name)")
    }

    @Test func vipAboveTenThousandRoublesAMonthEarnsWithTheMultiplier() {
        let rules = RulesDocument(
            version: 1, issuedAtMilliseconds: 0, phoneKey: [UInt8](repeating: 0, count: 32),
            defaultPartner: Self.onePointPerHundredRoubles, vipThresholdMinor: 1_000_000, vipMultiplierPercent: 150)
        #expect(rules.isVIP(lastMonthSpend: 1_000_000) && !rules.isVIP(lastMonthSpend: 999_999))
        #expect(rules.pointsEarned(partner: nil, paidMinor: 100_000, at: 0, vip: true) == 15)
        #expect(rules.pointsEarned(partner: nil, paidMinor: 100_000, at: 0, vip: false) == 10)
    }
}
