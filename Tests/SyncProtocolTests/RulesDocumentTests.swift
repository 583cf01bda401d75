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

    @Test func nonsenseValuesAreRefusedEvenWhenSigned() {
        var bad = Self.document
        bad.partners["broken"] = PartnerRules(accrualBasisPoints: 20_000)
        let hub = SigningKeyPair.generate()
        #expect(throws: RulesDocument.Failure.invalid("partner broken: basis points above 10000")) {
            _ = try RulesDocument.verify(bad.signed(by: hub), hubKey: hub.publicKey)
        }
    }
}
