// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Test} from "./utils/Test.sol";
import {Escrow} from "../src/Escrow.sol";
import {Registry} from "../src/Registry.sol";
import {MockUSDC} from "../src/MockUSDC.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

/// Drives the escrow with random deposits, withdrawals, funding, unlocks, reclaims,
/// redeems of random vouchers for random claims by three payers to two providers, and
/// provider withdrawals, and keeps ghost totals.
contract EscrowHandler is Test {
    MockUSDC public usdc;
    Escrow public escrow;
    uint256[3] internal payerKeys = [uint256(0xA1), 0xA2, 0xA3];
    address[3] public payers;
    address[2] public providers;
    /// Highest voucher amount signed per (payer, provider, epoch).
    mapping(address => mapping(address => mapping(uint64 => uint256))) public bestVoucher;
    /// Highest claim made per (payer, provider, epoch).
    mapping(address => mapping(address => mapping(uint64 => uint256))) public bestClaim;
    /// Total ever paid to each provider (credited to its free balance).
    mapping(address => uint256) public paidTo;
    uint256 public redeems;
    uint256 public deposited;
    uint256 public withdrawn;
    uint256 public withdrawnByProviders;

    constructor(MockUSDC usdc_, Escrow escrow_) {
        usdc = usdc_;
        escrow = escrow_;
        for (uint256 i = 0; i < 3; ++i) {
            payers[i] = vm.addr(payerKeys[i]);
            vm.prank(payers[i]);
            usdc.approve(address(escrow), type(uint256).max);
        }
        providers[0] = vm.addr(0xB1);
        providers[1] = vm.addr(0xB2);
    }

    function deposit(uint8 who, uint96 amount) external {
        address p = payers[who % 3];
        uint256 a = bound(amount, 1, 1_000e6);
        usdc.mint(p, a);
        vm.prank(p);
        escrow.deposit(a);
        deposited += a;
    }

    function withdraw(uint8 who, uint96 amount) external {
        address p = payers[who % 3];
        uint256 bal = escrow.balanceOf(p);
        if (bal == 0) return;
        uint256 a = bound(amount, 1, bal);
        vm.prank(p);
        escrow.withdraw(a);
        withdrawn += a;
    }

    function fund(uint8 who, uint8 to, uint96 amount) external {
        address p = payers[who % 3];
        uint256 bal = escrow.balanceOf(p);
        if (bal == 0) return;
        vm.prank(p);
        escrow.fund(providers[to % 2], bound(amount, 1, bal));
    }

    function requestUnlock(uint8 who, uint8 to) external {
        address p = payers[who % 3];
        address prov = providers[to % 2];
        (uint256 funds, uint256 redeemed,, uint64 unlockAt) = escrow.channel(p, prov);
        if (funds == redeemed || unlockAt != 0) return;
        vm.prank(p);
        escrow.requestUnlock(prov);
    }

    function reclaim(uint8 who, uint8 to, uint32 wait) external {
        address p = payers[who % 3];
        address prov = providers[to % 2];
        (,,, uint64 unlockAt) = escrow.channel(p, prov);
        if (unlockAt == 0) return;
        vm.warp(block.timestamp + bound(wait, 0, 2 days));
        if (block.timestamp < unlockAt) return;
        vm.prank(p);
        escrow.reclaim(prov);
    }

    function redeem(uint8 who, uint8 to, uint96 amount, uint96 claim, uint32 wait) external {
        uint256 k = payerKeys[who % 3];
        address p = payers[who % 3];
        address prov = providers[to % 2];
        vm.warp(block.timestamp + bound(wait, 0, 2 hours));
        (,, uint64 epoch,) = escrow.channel(p, prov);
        Escrow.Voucher memory v = Escrow.Voucher(p, prov, epoch, bound(amount, 0, 2_000e6));
        if (v.amount > bestVoucher[p][prov][epoch]) bestVoucher[p][prov][epoch] = v.amount;
        uint256 c = bound(claim, 0, 2_000e6);
        if (c > bestClaim[p][prov][epoch]) bestClaim[p][prov][epoch] = c;
        (uint8 sv, bytes32 r, bytes32 s) = vm.sign(k, escrow.voucherDigest(v));
        vm.prank(prov);
        paidTo[prov] += escrow.redeem(v, abi.encodePacked(r, s, sv), c);
        redeems++;
    }

    function providerWithdraw(uint8 to, uint96 amount) external {
        address prov = providers[to % 2];
        uint256 bal = escrow.balanceOf(prov);
        if (bal == 0) return;
        uint256 a = bound(amount, 1, bal);
        vm.prank(prov);
        escrow.withdraw(a);
        withdrawnByProviders += a;
    }

    function payerAt(uint256 i) external view returns (address) {
        return payers[i];
    }

    function providerAt(uint256 i) external view returns (address) {
        return providers[i];
    }
}

contract EscrowInvariantTest is Test {
    MockUSDC internal usdc;
    Escrow internal escrow;
    Registry internal registry;
    EscrowHandler internal handler;
    uint256 internal constant MIN_VALUE = 1000;

    function setUp() public {
        vm.warp(1_700_000_000);
        usdc = new MockUSDC();
        registry = new Registry(1 hours, MIN_VALUE);
        escrow = new Escrow(IERC20(address(usdc)), 1 days, registry);
        registry.setEscrow(address(escrow));
        handler = new EscrowHandler(usdc, escrow);
        targetContract(address(handler));
    }

    /// Tokens held by the escrow equal free balances plus what channels still hold.
    function invariant_tokensMatchBooks() public view {
        uint256 sum = escrow.balanceOf(handler.providerAt(0)) + escrow.balanceOf(handler.providerAt(1));
        for (uint256 i = 0; i < 3; ++i) {
            address p = handler.payerAt(i);
            sum += escrow.balanceOf(p);
            for (uint256 j = 0; j < 2; ++j) {
                (uint256 funds, uint256 redeemed,,) = escrow.channel(p, handler.providerAt(j));
                sum += funds - redeemed;
            }
        }
        vm.assertEq(usdc.balanceOf(address(escrow)), sum);
    }

    /// Per channel: redeemed never exceeds funds, the best voucher signed in the epoch, nor
    /// the highest amount the provider claimed.
    function invariant_redeemedBounded() public view {
        for (uint256 i = 0; i < 3; ++i) {
            address p = handler.payerAt(i);
            for (uint256 j = 0; j < 2; ++j) {
                address prov = handler.providerAt(j);
                (uint256 funds, uint256 redeemed, uint64 epoch,) = escrow.channel(p, prov);
                vm.assertLe(redeemed, funds, "redeemed > funds");
                vm.assertLe(redeemed, handler.bestVoucher(p, prov, epoch), "redeemed > best voucher");
                vm.assertLe(redeemed, handler.bestClaim(p, prov, epoch), "redeemed > claim");
            }
        }
    }

    /// No token appears or vanishes: what went in minus what payers took out is exactly what
    /// the escrow holds plus what providers were paid.
    function invariant_conservation() public view {
        uint256 paid = usdc.balanceOf(handler.providerAt(0)) + usdc.balanceOf(handler.providerAt(1));
        vm.assertEq(paid, handler.withdrawnByProviders());
        vm.assertEq(handler.deposited() - handler.withdrawn(), usdc.balanceOf(address(escrow)) + paid);
    }

    /// Each provider's free balance is exactly what it was paid minus what it withdrew, and
    /// the registry counts every paid unit; each reputation point stands for at least
    /// `minServiceValue` redeemed in its own service period.
    function invariant_providerBooksAndReputation() public view {
        for (uint256 j = 0; j < 2; ++j) {
            address prov = handler.providerAt(j);
            uint256 paid = handler.paidTo(prov);
            vm.assertEq(escrow.balanceOf(prov) + usdc.balanceOf(prov), paid, "provider balance");
            vm.assertEq(registry.valueRedeemedOf(prov), paid, "registry value");
            vm.assertLe(registry.reputationOf(prov) * MIN_VALUE, paid, "points without value");
            vm.assertLe(registry.payersOf(prov), 3);
        }
    }
}
