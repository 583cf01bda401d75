import Testing

@testable import SyncProtocol

@Suite struct RulesDocumentTests {
    static var document: RulesDocument {
        var policy = OfflinePolicy()
        policy.maxPointsPerRedemption = 200
        return RulesDocument(
            version: 3, issuedAtMilliseconds: 1_764_000_000_000, phoneKey: [UInt8](repeating: 9, count: 32),
            partners: [
                "fuel": PartnerRules(accrualBasisPoints: 100, minorUnitsPerPoint: 100, maxRedeemBasisPoints: 5000)
            ],
            offline: policy)
    }

    @Test func aSignedDocumentVerifiesAgainstTheHubKeyAndDecodesUnchanged() throws {
        let hub = SigningKeyPair.generate()
        let signed = Self.document.signed(by: hub)
        let decoded = try RulesDocument.verify(signed, hubKey: hub.publicKey)
        #expect(decoded == Self.document)
        #expect(decoded.partner("fuel").accrualBasisPoints == 100)
        #expect(decoded.partner("grocer") == PartnerRules(), "unknown partners get the default economics")
    }

    @Test func anotherKeyOrAnyChangedByteIsRefused() throws {
        let hub = SigningKeyPair.generate()
        let signed = Self.document.signed(by: hub)
        #expect(throws: RulesDocument.Failure.badSignature) {
            _ = try RulesDocument.verify(signed, hubKey: SigningKeyPair.generate().publicKey)
        }
        for index in stride(from: 0, to: signed.count, by: 7) {
            var tampered = signed
            tampered[index] ^= 0x01
            #expect(throws: RulesDocument.Failure.self) {
                _ = try RulesDocument.verify(tampered, hubKey: hub.publicKey)
            }
        }
        #expect(throws: RulesDocument.Failure.self) { _ = try RulesDocument.verify([1, 2, 3], hubKey: hub.publicKey) }
    }

    @Test func placementDaysTravelOnlyWhenSetAndAreBounded() throws {
        let hub = SigningKeyPair.generate()
        var placed = Self.document
        placed.placementDays = 30
        #expect(placed.encoded.count == Self.document.encoded.count + 8, "without placement the bytes are unchanged")
        #expect(try RulesDocument.verify(placed.signed(by: hub), hubKey: hub.publicKey).placementDays == 30)
        #expect(try RulesDocument.verify(Self.document.signed(by: hub), hubKey: hub.publicKey).placementDays == 0)
        placed.placementDays = 400
        #expect(throws: RulesDocument.Failure.invalid("rights placement for more than 365 days")) {
            _ = try RulesDocument.verify(placed.signed(by: hub), hubKey: hub.publicKey)
        }
    }

    @Test func nonsenseValuesAreRefusedEvenWhenSigned() {
        var bad = Self.document
        bad.partners["broken"] = PartnerRules(accrualBasisPoints: 20_000)
        let hub = SigningKeyPair.generate()
        #expect(throws: RulesDocument.Failure.invalid("partner broken: basis points above 10000")) {
            _ = try RulesDocument.verify(bad.signed(by: hub), hubKey: hub.publicKey)
        }
    }
}

@Suite struct CampaignTests {
    static let december1 = Campaign.day(year: 2026, month: 12, day: 1)

    @Test func calendarDaysAreCountedInTheProgrammesTimeZone() {
        #expect(Campaign.day(year: 1970, month: 1, day: 1) == 0)
        #expect(Campaign.day(parsing: "2026-12-01") == Self.december1)
        #expect(Campaign.day(parsing: "2026-13-01") == nil && Campaign.day(parsing: "26-12-01") == nil)
        let moscow = RulesDocument(
            version: 1, issuedAtMilliseconds: 0, phoneKey: [UInt8](repeating: 0, count: 32), timeZoneOffsetMinutes: 180)
        // 30 November 22:00 UTC is already 1 December in Moscow.
        let lateNovemberUTC = UInt64(Self.december1) * 86_400_000 - 2 * 3_600_000
        #expect(moscow.day(of: lateNovemberUTC) == Self.december1)
        var utc = moscow
        utc.timeZoneOffsetMinutes = 0
        #expect(utc.day(of: lateNovemberUTC) == Self.december1 - 1)
    }

    /// 5 % accrual at 1 point = 1.00: 2,000.00 paid earns 100 points without a campaign.
    static let cases: [(partner: String, day: Int64, expected: UInt64)] = [
        ("fuel", 0, 100),  // before the campaigns
        ("fuel", 1, 300 + 50),  // ×3 (the largest) and +50
        ("grocer", 1, 200),  // only the all-partner ×2
        ("grocer", 31, 100),  // after it
    ]

    @Test(arguments: cases)
    func campaignsMultiplyAndAddPoints(partner: String, day offset: Int64, expected: UInt64) {
        let rules = RulesDocument(
            version: 1, issuedAtMilliseconds: 0, phoneKey: [UInt8](repeating: 0, count: 32),
            campaigns: [
                Campaign(
                    partner: nil, firstDay: Self.december1 + 1, lastDay: Self.december1 + 30, multiplierPercent: 200),
                Campaign(
                    partner: "fuel", firstDay: Self.december1 + 1, lastDay: Self.december1 + 1, multiplierPercent: 300,
                    bonusPoints: 50),
            ])
        let at = UInt64(Self.december1 + offset) * 86_400_000 + 43_200_000
        #expect(rules.pointsEarned(partner: partner, paidMinor: 200_000, at: at) == expected)
    }

    @Test func campaignsSurviveSigningAndBadOnesAreRefused() throws {
        let hub = SigningKeyPair.generate()
        var rules = RulesDocument(
            version: 1, issuedAtMilliseconds: 0, phoneKey: [UInt8](repeating: 0, count: 32),
            timeZoneOffsetMinutes: -300,
            campaigns: [Campaign(partner: "fuel", firstDay: 10, lastDay: 20, multiplierPercent: 150, bonusPoints: 5)])
        #expect(try RulesDocument.verify(rules.signed(by: hub), hubKey: hub.publicKey) == rules)
        rules.campaigns = [Campaign(partner: nil, firstDay: 20, lastDay: 10)]
        #expect(throws: RulesDocument.Failure.invalid("a campaign ends before it starts")) {
            _ = try RulesDocument.verify(rules.signed(by: hub), hubKey: hub.publicKey)
        }
    }
}
