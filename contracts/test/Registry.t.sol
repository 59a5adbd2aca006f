// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Test} from "./utils/Test.sol";
import {Registry} from "../src/Registry.sol";
import {OperatorConsent} from "../src/OperatorConsent.sol";

/// Shared fixture: a registry, owners alice and bob, an operator `op` with a known key (it
/// signs consents), and a consent signer whose digest is computed here (pins EIP-712).
abstract contract RegistryFixture is Test {
    Registry internal reg;
    address internal alice = address(0xA11CE);
    address internal bob = address(0xB0B);
    uint256 internal constant OP_KEY = 0x0F0F;
    uint256 internal constant BOB_KEY = 0xB0B0;
    address internal op;
    bytes32 internal constant KEY = 0x00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff;
    address internal escrowAddr = address(0xE5C);
    uint64 internal constant MIN_PERIOD = 1 hours;
    uint256 internal constant MIN_VALUE = 1000;

    function setUp() public virtual {
        vm.warp(1_700_000_000);
        op = vm.addr(OP_KEY);
        bob = vm.addr(BOB_KEY);
        reg = new Registry(MIN_PERIOD, MIN_VALUE);
        reg.setEscrow(escrowAddr);
    }

    /// The operator `key` consents to `owner` pointing `node` at it with `pubkey`.
    function _consent(uint256 key, bytes32 node, address owner, bytes32 pubkey, uint256 deadline)
        internal
        view
        returns (OperatorConsent.Consent memory)
    {
        address operator = vm.addr(key);
        bytes32 domain = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("Khachapuri Registry"),
                keccak256("1"),
                block.chainid,
                address(reg)
            )
        );
        bytes32 structHash = keccak256(
            abi.encode(
                keccak256(
                    "OperatorConsent(bytes32 node,address owner,address operator,bytes32 pubkey,uint256 nonce,uint256 deadline)"
                ),
                node,
                owner,
                operator,
                pubkey,
                reg.nonces(operator),
                deadline
            )
        );
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, keccak256(abi.encodePacked("\x19\x01", domain, structHash)));
        return OperatorConsent.Consent(deadline, abi.encodePacked(r, s, v));
    }

    /// `who` registers `name` naming `op`, with op's signed consent.
    function _register(address who, string memory name) internal returns (bytes32) {
        OperatorConsent.Consent memory c = _consent(OP_KEY, keccak256(bytes(name)), who, KEY, block.timestamp);
        vm.prank(who);
        return reg.registerWithConsent(name, op, "https://p.example", KEY, "eu-west,us-east", "ops@p.example", c);
    }
}

contract RegistryTest is RegistryFixture {
    // ------------------------------------------------------------ names

    function test_register_storesRecordAndEnsReaders() public {
        bytes32 node = _register(alice, "dev");
        vm.assertEq(node, keccak256("dev"));
        vm.assertEq(reg.nodeOf("dev"), node);
        vm.assertEq(reg.addr(node), op);
        vm.assertEq(reg.text(node, "url"), "https://p.example");
        vm.assertEq(reg.text(node, "pubkey"), "0x00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff");
        vm.assertEq(reg.text(node, "regions"), "eu-west,us-east");
        vm.assertEq(reg.text(node, "contact"), "ops@p.example");
        vm.assertEq(reg.text(node, "nope"), "");
        Registry.Record memory r = reg.record(node);
        vm.assertEq(r.owner, alice);
        vm.assertEq(r.name, "dev");
        vm.assertEq(r.pubkey, KEY);
        vm.assertEq(reg.nodeCount(), 1);
        vm.assertEq(reg.nodes()[0], node);
        vm.assertEq(reg.namesOwned(alice), 1);
    }

    function test_register_emits() public {
        vm.expectEmit(true, true, false, true);
        emit Registry.Registered(keccak256("dev"), "dev", alice, op);
        _register(alice, "dev");
    }

    function test_register_firstComeFirstServed() public {
        bytes32 node = _register(alice, "dev");
        vm.prank(bob);
        vm.expectRevert(abi.encodeWithSelector(Registry.NameTaken.selector, node));
        reg.register("dev", bob, "u", KEY, "", "");
    }

    function test_register_rejectsBadNames() public {
        string[6] memory bad = ["", "Dev", "-dev", "dev-", "de v", "a.b"];
        for (uint256 i = 0; i < bad.length; ++i) {
            vm.prank(op);
            vm.expectRevert(Registry.InvalidName.selector);
            reg.register(bad[i], op, "u", KEY, "", "");
        }
        // 64 characters is one too many for a DNS label.
        vm.prank(op);
        vm.expectRevert(Registry.InvalidName.selector);
        reg.register("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", op, "u", KEY, "", "");
        vm.prank(op);
        reg.register("a-1", op, "u", KEY, "", "");
    }

    function test_register_rejectsZeroOperator() public {
        vm.prank(address(0));
        vm.expectRevert(Registry.ZeroAddress.selector);
        reg.register("dev", address(0), "u", KEY, "", "");
    }

    function test_setters_ownerOnly() public {
        bytes32 node = _register(alice, "dev");
        // The operator publishes its own key; then bob consents to becoming the operator.
        vm.prank(op);
        reg.setPubkey(node, bytes32(uint256(1)));
        OperatorConsent.Consent memory c = _consent(BOB_KEY, node, alice, bytes32(uint256(1)), block.timestamp);
        vm.startPrank(alice);
        reg.setUrl(node, "http://127.0.0.1:8080");
        reg.setOperatorWithConsent(node, bob, c);
        reg.setRegions(node, "local");
        reg.setContact(node, "me");
        reg.setAttestation(node, "bafkqaaa");
        reg.setP2p(node, "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooW");
        vm.stopPrank();
        vm.assertEq(reg.text(node, "p2p"), "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooW");
        vm.assertEq(reg.text(node, "url"), "http://127.0.0.1:8080");
        vm.assertEq(reg.addr(node), bob);
        vm.assertEq(reg.text(node, "regions"), "local");
        vm.assertEq(reg.text(node, "contact"), "me");
        vm.assertEq(reg.text(node, "attestation"), "bafkqaaa");
        vm.assertEq(reg.record(node).pubkey, bytes32(uint256(1)));

        vm.startPrank(bob);
        bytes memory notOwner = abi.encodeWithSelector(Registry.NotOwner.selector, node, bob);
        vm.expectRevert(notOwner);
        reg.setUrl(node, "x");
        vm.expectRevert(notOwner);
        reg.setOperator(node, bob);
        vm.expectRevert(notOwner);
        reg.setRegions(node, "x");
        vm.expectRevert(notOwner);
        reg.setContact(node, "x");
        vm.expectRevert(notOwner);
        reg.setAttestation(node, "x");
        vm.expectRevert(notOwner);
        reg.setP2p(node, "x");
        vm.expectRevert(notOwner);
        reg.update(node, bob, "x", 0, "", "");
        vm.expectRevert(notOwner);
        reg.transfer(node, bob);
        vm.expectRevert(notOwner);
        reg.drop(node);
        vm.stopPrank();

        bytes32 unknown = keccak256("ghost");
        vm.expectRevert(abi.encodeWithSelector(Registry.UnknownName.selector, unknown));
        reg.setUrl(unknown, "x");
        vm.expectRevert(abi.encodeWithSelector(Registry.UnknownName.selector, unknown));
        reg.setPubkey(unknown, 0);
        vm.prank(alice);
        vm.expectRevert(Registry.ZeroAddress.selector);
        reg.setOperator(node, address(0));
    }

    function test_update_replacesFields() public {
        bytes32 node = _register(alice, "dev");
        // Same operator and key: the owner alone may change the rest.
        vm.prank(alice);
        reg.update(node, op, "http://same-op", KEY, "r0", "c0");
        vm.assertEq(reg.text(node, "url"), "http://same-op");
        OperatorConsent.Consent memory c = _consent(BOB_KEY, node, alice, bytes32(uint256(7)), block.timestamp);
        vm.prank(alice);
        reg.updateWithConsent(node, bob, "http://new", bytes32(uint256(7)), "r", "c", c);
        vm.assertEq(reg.addr(node), bob);
        vm.assertEq(reg.text(node, "url"), "http://new");
        vm.assertEq(reg.text(node, "regions"), "r");
        vm.prank(alice);
        vm.expectRevert(Registry.ZeroAddress.selector);
        reg.update(node, address(0), "", 0, "", "");
    }

    function test_transfer_movesOwnership() public {
        bytes32 node = _register(alice, "dev");
        vm.expectEmit(true, true, true, true);
        emit Registry.Transferred(node, alice, bob);
        OperatorConsent.Consent memory c = _consent(OP_KEY, node, bob, KEY, block.timestamp);
        vm.prank(alice);
        reg.transferWithConsent(node, bob, c);
        vm.assertEq(reg.record(node).owner, bob);
        vm.assertEq(reg.namesOwned(alice), 0);
        vm.assertEq(reg.namesOwned(bob), 1);
        vm.prank(bob);
        reg.setUrl(node, "bob's");
        vm.prank(bob);
        vm.expectRevert(Registry.ZeroAddress.selector);
        reg.transfer(node, address(0));
    }

    function test_drop_releasesName() public {
        bytes32 node = _register(alice, "dev");
        vm.prank(alice);
        uint256 id = reg.createTable(1, 2, 3);
        vm.prank(alice);
        reg.subscribe(node, id);
        vm.prank(alice);
        reg.drop(node);
        vm.assertEq(reg.addr(node), address(0));
        vm.assertEq(reg.text(node, "url"), "");
        vm.assertEq(reg.text(node, "pubkey"), "");
        vm.assertEq(reg.nodeCount(), 0);
        vm.assertEq(reg.tableIds().length, 0, "its table lost its only subscriber");
        // Anyone may claim it again.
        _register(bob, "dev");
        vm.assertEq(reg.record(node).owner, bob);
    }

    // ------------------------------------------------------------ pricing tables

    function test_tables_lifecycle() public {
        bytes32 a = _register(alice, "alice");
        bytes32 b = _register(bob, "bob");
        vm.expectEmit(true, true, false, true);
        emit Registry.TableCreated(1, alice, 100, 2, 30);
        vm.prank(alice);
        uint256 id = reg.createTable(100, 2, 30);
        vm.assertEq(id, 1);
        Registry.PricingTable memory t = reg.table(id);
        vm.assertEq(t.perRequest, 100);
        vm.assertEq(t.perMs, 2);
        vm.assertEq(t.perMb, 30);
        vm.assertEq(t.creator, alice);

        vm.prank(alice);
        reg.subscribe(a, id);
        vm.prank(bob);
        reg.subscribe(b, id);
        vm.assertEq(reg.table(id).subscribers, 2);
        vm.assertEq(reg.record(a).pricingTable, id);

        // Moving to another table leaves the first.
        vm.prank(bob);
        uint256 id2 = reg.createTable(1, 1, 1);
        vm.prank(bob);
        reg.subscribe(b, id2);
        vm.assertEq(reg.table(id).subscribers, 1);
        // Subscribing again to the same table changes nothing.
        vm.prank(bob);
        reg.subscribe(b, id2);
        vm.assertEq(reg.table(id2).subscribers, 1);

        vm.expectEmit(true, false, false, false);
        emit Registry.TableDeleted(id);
        vm.prank(alice);
        reg.unsubscribe(a);
        vm.assertEq(reg.table(id).creator, address(0));
        uint256[] memory ids = reg.tableIds();
        vm.assertEq(ids.length, 1);
        vm.assertEq(ids[0], id2);
    }

    function test_tables_reverts() public {
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(Registry.NotRegistered.selector, alice));
        reg.createTable(1, 1, 1);
        bytes32 a = _register(alice, "alice");
        vm.startPrank(alice);
        vm.expectRevert(abi.encodeWithSelector(Registry.UnknownTable.selector, 9));
        reg.subscribe(a, 9);
        vm.expectRevert(abi.encodeWithSelector(Registry.NotSubscribed.selector, a));
        reg.unsubscribe(a);
        vm.stopPrank();
        vm.prank(alice);
        uint256 id = reg.createTable(1, 1, 1);
        vm.prank(bob);
        vm.expectRevert(abi.encodeWithSelector(Registry.NotOwner.selector, a, bob));
        reg.subscribe(a, id);
    }

    // ------------------------------------------------------------ escrow / reputation

    function test_setEscrow_onceByAdmin() public {
        Registry r = new Registry(1, 1);
        vm.prank(alice);
        vm.expectRevert(Registry.NotAdmin.selector);
        r.setEscrow(alice);
        vm.expectRevert(Registry.ZeroAddress.selector);
        r.setEscrow(address(0));
        r.setEscrow(alice);
        vm.assertEq(r.escrow(), alice);
        vm.expectRevert(Registry.EscrowAlreadySet.selector);
        r.setEscrow(bob);
    }

    function test_reportService_onlyEscrowAndMinimums() public {
        vm.prank(alice);
        vm.expectRevert(Registry.NotEscrow.selector);
        reg.reportService(op, alice, 2 hours, MIN_VALUE, 1, true);
        vm.startPrank(escrowAddr);
        vm.assertFalse(reg.reportService(op, alice, MIN_PERIOD - 1, MIN_VALUE, 10, true), "period too short");
        vm.assertFalse(reg.reportService(op, alice, MIN_PERIOD, MIN_VALUE - 1, 10, false), "too little value");
        vm.assertFalse(reg.reportService(op, bob, 0, MIN_VALUE, 10, true), "no service period");
        vm.assertEq(reg.reputationOf(op), 0);
        vm.expectEmit(true, true, false, true);
        emit Registry.ReputationIncreased(op, alice, MIN_PERIOD, MIN_VALUE, 1);
        vm.assertTrue(reg.reportService(op, alice, MIN_PERIOD, MIN_VALUE, 10, false));
        // A report that paid nothing counts no value and no payer.
        vm.assertFalse(reg.reportService(op, address(0xDEAD), 0, 0, 0, true));
        vm.stopPrank();
        vm.assertEq(reg.reputationOf(op), 1);
        vm.assertEq(reg.payersOf(op), 2, "alice and bob paid; 0xDEAD did not");
        vm.assertEq(reg.valueRedeemedOf(op), 40);
        bytes32 node = _register(alice, "dev");
        Registry.Record memory r = reg.record(node);
        vm.assertEq(r.reputation, 1, "record shows its operator's points");
        vm.assertEq(r.payers, 2);
        vm.assertEq(r.valueRedeemed, 40);
        vm.assertEq(reg.record(keccak256("ghost")).valueRedeemed, 0);
    }

    function test_supportsInterface() public view {
        vm.assertTrue(reg.supportsInterface(0x3b3b57de));
        vm.assertTrue(reg.supportsInterface(0x59d1d43c));
        vm.assertTrue(reg.supportsInterface(0x01ffc9a7));
        vm.assertFalse(reg.supportsInterface(0xffffffff));
    }

    // ------------------------------------------------------------ fuzz

    function testFuzz_nodeIsKeccakOfName(bytes32 seed, uint8 len) public {
        bytes memory alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
        uint256 n = bound(len, 1, 32);
        bytes memory b = new bytes(n);
        for (uint256 i = 0; i < n; ++i) {
            b[i] = alphabet[uint8(seed[i]) % alphabet.length];
        }
        string memory name = string(b);
        vm.prank(op);
        bytes32 node = reg.register(name, op, "u", KEY, "", "");
        vm.assertEq(node, keccak256(b));
        vm.assertEq(reg.record(node).name, name);
    }

    function testFuzz_tablePrices(uint256 perRequest, uint256 perMs, uint256 perMb) public {
        _register(alice, "alice");
        vm.prank(alice);
        uint256 id = reg.createTable(perRequest, perMs, perMb);
        Registry.PricingTable memory t = reg.table(id);
        vm.assertEq(t.perRequest, perRequest);
        vm.assertEq(t.perMs, perMs);
        vm.assertEq(t.perMb, perMb);
    }
}
