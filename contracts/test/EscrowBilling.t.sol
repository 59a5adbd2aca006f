// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {EscrowFixture} from "./Escrow.t.sol";
import {Escrow} from "../src/Escrow.sol";
import {Registry} from "../src/Registry.sol";
import {IReputation} from "../src/IReputation.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {PausableToken} from "./utils/Tokens.sol";

/// Exact billing (the provider claims what calls cost, the voucher is only a limit), redeems
/// credited to the provider's free balance, and reputation that needs value redeemed.
contract EscrowBillingTest is EscrowFixture {
    function _redeem(uint256 amount, uint256 claim) internal returns (uint256) {
        Escrow.Voucher memory v = _voucher(payer, provider, 0, amount);
        bytes memory sig = _sign(PAYER_KEY, v);
        vm.prank(provider);
        return escrow.redeem(v, sig, claim);
    }

    // ------------------------------------------------------------ exact billing

    function test_redeem_paysTheClaimNotTheVoucher() public {
        _fund(10e6);
        // A 5 USDC prepaid voucher, 1.25 USDC of calls served: the provider takes 1.25.
        vm.expectEmit(true, true, false, true);
        emit Escrow.Redeemed(payer, provider, 0, 1.25e6, 1.25e6);
        vm.assertEq(_redeem(5e6, 1.25e6), 1.25e6);
        (, uint256 redeemed,,) = _channel();
        vm.assertEq(redeemed, 1.25e6);
        vm.assertEq(escrow.balanceOf(provider), 1.25e6);
        // More calls later: the same voucher, a higher cumulative claim, pays the difference.
        vm.assertEq(_redeem(5e6, 2e6), 0.75e6);
        // A lower or equal claim pays nothing (claims are cumulative, like vouchers).
        vm.assertEq(_redeem(5e6, 1e6), 0);
        vm.assertEq(_redeem(5e6, 2e6), 0);
        // A claim above the voucher is capped by it, and a zero claim pays nothing.
        vm.assertEq(_redeem(5e6, 9e6), 3e6);
        vm.assertEq(_redeem(5e6, 0), 0);
        (, redeemed,,) = _channel();
        vm.assertEq(redeemed, 5e6);
        vm.assertEq(escrow.balanceOf(provider), 5e6);
    }

    function test_redeem_claimCappedByFunds() public {
        _fund(3e6);
        vm.assertEq(_redeem(9e6, 4e6), 3e6);
        // More funds let the same claim take the rest of it, and no more.
        _fund(5e6);
        vm.assertEq(_redeem(9e6, 4e6), 1e6);
        (uint256 funds, uint256 redeemed,,) = _channel();
        vm.assertEq(funds, 8e6);
        vm.assertEq(redeemed, 4e6);
        // What was prepaid but not claimed goes back to the payer.
        vm.prank(payer);
        escrow.requestUnlock(provider);
        vm.warp(block.timestamp + DELAY);
        vm.prank(payer);
        escrow.reclaim(provider);
        vm.assertEq(escrow.balanceOf(payer), 4e6);
        // The same payer paying again in the next epoch is still one distinct payer.
        vm.assertEq(registry.payersOf(provider), 1);
        _fund(1e6);
        Escrow.Voucher memory v = _voucher(payer, provider, 1, 1e6);
        bytes memory sig = _sign(PAYER_KEY, v);
        vm.prank(provider);
        vm.assertEq(escrow.redeem(v, sig, 1e6), 1e6);
        vm.assertEq(registry.payersOf(provider), 1);
        vm.assertEq(registry.valueRedeemedOf(provider), 5e6);
    }

    function test_redeemBatch_takesEachClaim() public {
        _fund(10e6);
        address payer2 = vm.addr(0xD00D);
        usdc.mint(payer2, 10e6);
        vm.startPrank(payer2);
        usdc.approve(address(escrow), type(uint256).max);
        escrow.deposit(10e6);
        escrow.fund(provider, 10e6);
        vm.stopPrank();
        Escrow.Voucher[] memory vs = new Escrow.Voucher[](2);
        bytes[] memory sigs = new bytes[](2);
        uint256[] memory claims = new uint256[](2);
        vs[0] = _voucher(payer, provider, 0, 4e6);
        vs[1] = _voucher(payer2, provider, 0, 8e6);
        sigs[0] = _sign(PAYER_KEY, vs[0]);
        sigs[1] = _sign(0xD00D, vs[1]);
        claims[0] = 1;
        claims[1] = 9e6; // above the voucher: capped at 8
        vm.prank(provider);
        vm.assertEq(escrow.redeemBatch(vs, sigs, claims), 8e6 + 1);
        (, uint256 r1,,) = escrow.channel(payer, provider);
        (, uint256 r2,,) = escrow.channel(payer2, provider);
        vm.assertEq(r1, 1);
        vm.assertEq(r2, 8e6);
        vm.assertEq(escrow.balanceOf(provider), 8e6 + 1);
    }

    function testFuzz_redeemedNeverAboveClaimVoucherOrFunds(uint96 funded, uint96 a1, uint96 c1, uint96 a2, uint96 c2)
        public
    {
        uint256 f = bound(funded, 1, 1_000e6);
        _fund(f);
        uint256 p1 = _redeem(a1, c1);
        uint256 p2 = _redeem(a2, c2);
        uint256 cap1 = _min(_min(a1, c1), f);
        uint256 cap2 = _min(_min(a2, c2), f);
        uint256 expected = cap1 > cap2 ? cap1 : cap2;
        (, uint256 redeemed,,) = _channel();
        vm.assertEq(redeemed, expected);
        vm.assertEq(p1 + p2, expected);
        vm.assertEq(escrow.balanceOf(provider), expected);
        vm.assertLe(redeemed, a1 > a2 ? a1 : a2, "above the best voucher");
        vm.assertLe(redeemed, c1 > c2 ? c1 : c2, "above the highest claim");
        vm.assertLe(redeemed, f, "above the funds");
    }

    function _min(uint256 a, uint256 b) internal pure returns (uint256) {
        return a < b ? a : b;
    }

    // ------------------------------------------------------------ no transfer at redeem

    function test_redeem_worksWhileTheTokenIsPaused() public {
        PausableToken t = new PausableToken();
        Escrow e = new Escrow(IERC20(address(t)), DELAY, IReputation(address(0)));
        t.mint(payer, 10e6);
        vm.startPrank(payer);
        t.approve(address(e), 10e6);
        e.deposit(10e6);
        e.fund(provider, 10e6);
        e.requestUnlock(provider);
        vm.stopPrank();
        t.setPaused(true);
        // The provider collects what it served although the token moves nothing...
        Escrow.Voucher memory v = _voucher(payer, provider, 0, 10e6);
        (uint8 sv, bytes32 r, bytes32 s) = vm.sign(PAYER_KEY, e.voucherDigest(v));
        vm.prank(provider);
        vm.assertEq(e.redeem(v, abi.encodePacked(r, s, sv), 4e6), 4e6);
        vm.assertEq(e.balanceOf(provider), 4e6);
        // ...so the payer's reclaim returns only the rest,
        vm.warp(block.timestamp + DELAY);
        vm.prank(payer);
        e.reclaim(provider);
        vm.assertEq(e.balanceOf(payer), 6e6);
        vm.prank(provider);
        vm.expectRevert();
        e.withdraw(4e6);
        // and the provider withdraws once the token moves again.
        t.setPaused(false);
        vm.prank(provider);
        e.withdraw(4e6);
        vm.assertEq(t.balanceOf(provider), 4e6);
    }

    // ------------------------------------------------------------ reputation

    function test_reputation_needsValueInThePeriod() public {
        _fund(10e6);
        vm.warp(block.timestamp + MIN_PERIOD);
        // A long period but dust redeemed: no point, value and payer still counted.
        vm.assertEq(_redeem(10e6, MIN_VALUE - 1), MIN_VALUE - 1);
        vm.assertEq(registry.reputationOf(provider), 0);
        vm.assertEq(uint256(escrow.periodValue(payer, provider)), MIN_VALUE - 1);
        vm.assertEq(registry.valueRedeemedOf(provider), MIN_VALUE - 1);
        vm.assertEq(registry.payersOf(provider), 1);
        // One more unit reaches the minimum value: a point, and the period restarts empty.
        vm.expectEmit(true, true, false, true);
        emit Registry.ReputationIncreased(provider, payer, MIN_PERIOD, MIN_VALUE, 1);
        _redeem(10e6, MIN_VALUE);
        vm.assertEq(registry.reputationOf(provider), 1);
        vm.assertEq(uint256(escrow.periodValue(payer, provider)), 0);
        vm.assertEq(uint256(escrow.serviceSince(payer, provider)), block.timestamp);
        // Enough value at once but too short a period: no point.
        vm.warp(block.timestamp + MIN_PERIOD - 1);
        _redeem(10e6, 1e6);
        vm.assertEq(registry.reputationOf(provider), 1);
        vm.assertEq(registry.payersOf(provider), 1, "the same payer counts once");
        vm.assertEq(registry.valueRedeemedOf(provider), 1e6);
    }

    function test_reputation_unlockResetsPeriodValue() public {
        _fund(10e6);
        _redeem(10e6, 5e5);
        vm.assertEq(uint256(escrow.periodValue(payer, provider)), 5e5);
        vm.prank(payer);
        escrow.requestUnlock(provider);
        vm.assertEq(uint256(escrow.periodValue(payer, provider)), 0);
        // Redeems while unlocking count value but earn no point.
        vm.warp(block.timestamp + MIN_PERIOD);
        _redeem(10e6, 2e6);
        vm.assertEq(registry.reputationOf(provider), 0);
        vm.assertEq(registry.valueRedeemedOf(provider), 2e6);
        // Funding again starts a fresh period from zero value.
        _fund(1);
        vm.assertEq(uint256(escrow.serviceSince(payer, provider)), block.timestamp);
        vm.assertEq(uint256(escrow.periodValue(payer, provider)), 0);
    }

    /// Many throwaway payers, each funding a channel with 2 base units and waiting out the
    /// period: every channel is "funded and unbroken" but moves dust, so no point is earned.
    function test_reputation_dustFarmingEarnsNothing() public {
        uint256 n = 50;
        Escrow.Voucher[] memory vs = new Escrow.Voucher[](n);
        bytes[] memory sigs = new bytes[](n);
        for (uint256 i = 0; i < n; ++i) {
            uint256 key = 0x5000 + i;
            address p = vm.addr(key);
            usdc.mint(p, 2);
            vm.startPrank(p);
            usdc.approve(address(escrow), 2);
            escrow.deposit(2);
            escrow.fund(provider, 2);
            vm.stopPrank();
            vs[i] = _voucher(p, provider, 0, 2);
            sigs[i] = _sign(key, vs[i]);
        }
        vm.warp(block.timestamp + 30 days);
        // Redeem 1 unit each (channels stay funded), then the second unit after another period.
        uint256[] memory claims = new uint256[](n);
        for (uint256 i = 0; i < n; ++i) {
            claims[i] = 1;
        }
        vm.prank(provider);
        escrow.redeemBatch(vs, sigs, claims);
        vm.warp(block.timestamp + 30 days);
        vm.prank(provider);
        escrow.redeemBatch(vs, sigs, _all(n));
        vm.assertEq(registry.reputationOf(provider), 0, "dust earns no point");
        vm.assertEq(registry.valueRedeemedOf(provider), 2 * n);
        vm.assertEq(registry.payersOf(provider), n);
    }
}
