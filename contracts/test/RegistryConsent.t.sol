// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {RegistryFixture} from "./Registry.t.sol";
import {Registry} from "../src/Registry.sol";
import {OperatorConsent} from "../src/OperatorConsent.sol";

/// A name only ever points at an operator that consented, and only the operator publishes
/// its key: sent by the operator, or with its one-time EIP-712 signature.
contract RegistryConsentTest is RegistryFixture {
    bytes32 internal constant NODE = keccak256("dev");
    bytes32 internal constant KEY2 = bytes32(uint256(2));

    function _refused(address operator) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(OperatorConsent.OperatorConsentRequired.selector, operator);
    }

    function test_register_namingAnotherOperatorIsRefused() public {
        vm.prank(alice);
        vm.expectRevert(_refused(op));
        reg.register("dev", op, "u", KEY, "", "");
        vm.assertEq(reg.addr(NODE), address(0));
        // The operator registering for itself needs no signature.
        vm.prank(op);
        reg.register("dev", op, "u", KEY, "", "");
        vm.assertEq(reg.record(NODE).owner, op);
    }

    function test_registerWithConsent_validSignatureWorksOnce() public {
        OperatorConsent.Consent memory c = _consent(OP_KEY, NODE, alice, KEY, block.timestamp + 1 hours);
        vm.assertEq(reg.nonces(op), 0);
        vm.prank(alice);
        reg.registerWithConsent("dev", op, "u", KEY, "", "", c);
        vm.assertEq(reg.addr(NODE), op);
        vm.assertEq(reg.record(NODE).owner, alice);
        vm.assertEq(reg.nonces(op), 1, "the consent used up the nonce");
        // Replayed after the name is dropped: the nonce moved on, the signature is dead.
        vm.prank(alice);
        reg.drop(NODE);
        vm.prank(alice);
        vm.expectRevert(OperatorConsent.BadConsent.selector);
        reg.registerWithConsent("dev", op, "u", KEY, "", "", c);
    }

    function test_registerWithConsent_expiredFails() public {
        OperatorConsent.Consent memory c = _consent(OP_KEY, NODE, alice, KEY, block.timestamp - 1);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(OperatorConsent.ConsentExpired.selector, block.timestamp - 1));
        reg.registerWithConsent("dev", op, "u", KEY, "", "", c);
    }

    function test_registerWithConsent_wrongSignatureFails() public {
        uint256 later = block.timestamp + 1;
        // Signed by someone else than the named operator.
        OperatorConsent.Consent memory c = _consent(BOB_KEY, NODE, alice, KEY, later);
        vm.prank(alice);
        vm.expectRevert(OperatorConsent.BadConsent.selector);
        reg.registerWithConsent("dev", op, "u", KEY, "", "", c);
        // The operator's consent to alice, used by bob (front-running the registration).
        c = _consent(OP_KEY, NODE, alice, KEY, later);
        vm.prank(bob);
        vm.expectRevert(OperatorConsent.BadConsent.selector);
        reg.registerWithConsent("dev", op, "u", KEY, "", "", c);
        // Another key than the one consented to, another name, another deadline, garbage.
        vm.startPrank(alice);
        vm.expectRevert(OperatorConsent.BadConsent.selector);
        reg.registerWithConsent("dev", op, "u", KEY2, "", "", c);
        vm.expectRevert(OperatorConsent.BadConsent.selector);
        reg.registerWithConsent("other", op, "u", KEY, "", "", c);
        vm.expectRevert(OperatorConsent.BadConsent.selector);
        reg.registerWithConsent("dev", op, "u", KEY, "", "", OperatorConsent.Consent(later + 1, c.signature));
        vm.expectRevert(OperatorConsent.BadConsent.selector);
        reg.registerWithConsent("dev", op, "u", KEY, "", "", OperatorConsent.Consent(later, hex"1234"));
        // The genuine one still works.
        reg.registerWithConsent("dev", op, "u", KEY, "", "", c);
        vm.stopPrank();
        vm.assertEq(reg.addr(NODE), op);
    }

    function test_consentDigest_matchesEip712() public view {
        vm.assertEq(
            reg.DOMAIN_SEPARATOR(),
            keccak256(
                abi.encode(
                    keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                    keccak256("Khachapuri Registry"),
                    keccak256("1"),
                    block.chainid,
                    address(reg)
                )
            )
        );
        vm.assertEq(
            reg.CONSENT_TYPEHASH(),
            keccak256(
                "OperatorConsent(bytes32 node,address owner,address operator,bytes32 pubkey,uint256 nonce,uint256 deadline)"
            )
        );
    }

    function test_operatorAndKeyChangesNeedConsent() public {
        _register(alice, "dev");
        vm.startPrank(alice);
        vm.expectRevert(_refused(bob));
        reg.setOperator(NODE, bob);
        vm.expectRevert(_refused(bob));
        reg.update(NODE, bob, "u", KEY, "", "");
        // Same operator but a new key: the operator must publish it, not the owner.
        vm.expectRevert(_refused(op));
        reg.update(NODE, op, "u", KEY2, "", "");
        vm.expectRevert(_refused(op));
        reg.setPubkey(NODE, KEY2);
        vm.stopPrank();
        vm.prank(bob);
        vm.expectRevert(_refused(op));
        reg.setPubkey(NODE, KEY2);
        vm.assertEq(reg.addr(NODE), op);
        vm.assertEq(reg.record(NODE).pubkey, KEY);

        // With the operator's consent the owner may set the key...
        OperatorConsent.Consent memory c = _consent(OP_KEY, NODE, alice, KEY2, block.timestamp);
        vm.prank(alice);
        reg.setPubkeyWithConsent(NODE, KEY2, c);
        vm.assertEq(reg.record(NODE).pubkey, KEY2);
        // ...but not replay that consent.
        vm.prank(alice);
        vm.expectRevert(OperatorConsent.BadConsent.selector);
        reg.setPubkeyWithConsent(NODE, KEY2, c);
        // The operator itself rotates its key directly.
        vm.prank(op);
        reg.setPubkey(NODE, KEY);
        vm.assertEq(reg.record(NODE).pubkey, KEY);
        // A new operator consents to the current key.
        c = _consent(BOB_KEY, NODE, alice, KEY, block.timestamp);
        vm.prank(alice);
        reg.setOperatorWithConsent(NODE, bob, c);
        vm.assertEq(reg.addr(NODE), bob);
    }

    function test_setOperator_byTheNewOperatorAsOwner() public {
        vm.prank(op);
        reg.register("dev", op, "u", KEY, "", "");
        // The owner can only hand the name to itself as operator, not to a stranger.
        vm.prank(op);
        vm.expectRevert(_refused(bob));
        reg.setOperator(NODE, bob);
        vm.prank(op);
        reg.setOperator(NODE, op);
        vm.assertEq(reg.addr(NODE), op);
    }

    function test_transfer_keepsConsentForTheNewOwner() public {
        _register(alice, "dev");
        // alice is not the operator: handing the name to a stranger needs op's consent.
        vm.prank(alice);
        vm.expectRevert(_refused(op));
        reg.transfer(NODE, bob);
        // A consent for another recipient does not do.
        OperatorConsent.Consent memory c = _consent(OP_KEY, NODE, address(0xCAFE), KEY, block.timestamp);
        vm.prank(alice);
        vm.expectRevert(OperatorConsent.BadConsent.selector);
        reg.transferWithConsent(NODE, bob, c);
        // Giving it to the operator itself is always fine, and the operator may give it on.
        vm.prank(alice);
        reg.transfer(NODE, op);
        vm.prank(op);
        reg.transfer(NODE, bob);
        vm.assertEq(reg.record(NODE).owner, bob);
        vm.assertEq(reg.addr(NODE), op);
    }
}
