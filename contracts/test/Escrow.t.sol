// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Test} from "./utils/Test.sol";
import {Escrow} from "../src/Escrow.sol";
import {Registry} from "../src/Registry.sol";
import {MockUSDC} from "../src/MockUSDC.sol";
import {IReputation} from "../src/IReputation.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {ReentrantToken} from "./utils/Tokens.sol";

/// Shared fixture: token, registry, escrow, a payer and a provider with known keys.
abstract contract EscrowFixture is Test {
    MockUSDC internal usdc;
    Registry internal registry;
    Escrow internal escrow;

    uint256 internal constant PAYER_KEY = 0xA11CE;
    uint256 internal constant PROVIDER_KEY = 0xB0B;
    uint256 internal constant OTHER_KEY = 0xC0FFEE;
    address internal payer;
    address internal provider;
    address internal other;

    uint64 internal constant DELAY = 1 days;
    uint64 internal constant MIN_PERIOD = 1 hours;
    uint256 internal constant MIN_VALUE = 1000;
    /// Claim everything the voucher allows (the pre-exact-billing behaviour).
    uint256 internal constant ALL = type(uint256).max;

    function setUp() public virtual {
        vm.warp(1_700_000_000);
        payer = vm.addr(PAYER_KEY);
        provider = vm.addr(PROVIDER_KEY);
        other = vm.addr(OTHER_KEY);
        usdc = new MockUSDC();
        registry = new Registry(MIN_PERIOD, MIN_VALUE);
        escrow = new Escrow(IERC20(address(usdc)), DELAY, registry);
        registry.setEscrow(address(escrow));
        usdc.mint(payer, 1_000e6);
        vm.prank(payer);
        usdc.approve(address(escrow), type(uint256).max);
    }

    function _deposit(address who, uint256 amount) internal {
        vm.prank(who);
        escrow.deposit(amount);
    }

    function _fund(uint256 amount) internal {
        _deposit(payer, amount);
        vm.prank(payer);
        escrow.fund(provider, amount);
    }

    /// `n` claims of everything the vouchers allow.
    function _all(uint256 n) internal pure returns (uint256[] memory claims) {
        claims = new uint256[](n);
        for (uint256 i = 0; i < n; ++i) {
            claims[i] = ALL;
        }
    }

    function _voucher(address p, address prov, uint64 epoch, uint256 amount)
        internal
        pure
        returns (Escrow.Voucher memory)
    {
        return Escrow.Voucher({payer: p, provider: prov, epoch: epoch, amount: amount});
    }

    /// Signs `v` for `escrow` with a digest computed here (not by the contract), so the test
    /// also pins the EIP-712 domain and type, and pranks are not consumed by a view call.
    function _sign(uint256 key, Escrow.Voucher memory v) internal view returns (bytes memory) {
        (uint8 sv, bytes32 r, bytes32 s) = vm.sign(key, _digest(address(escrow), block.chainid, v));
        return abi.encodePacked(r, s, sv);
    }

    function _digest(address verifying, uint256 chainId, Escrow.Voucher memory v) internal pure returns (bytes32) {
        bytes32 domain = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("Khachapuri Escrow"),
                keccak256("1"),
                chainId,
                verifying
            )
        );
        bytes32 structHash = keccak256(
            abi.encode(
                keccak256("Voucher(address payer,address provider,uint64 epoch,uint256 amount)"),
                v.payer,
                v.provider,
                v.epoch,
                v.amount
            )
        );
        return keccak256(abi.encodePacked("\x19\x01", domain, structHash));
    }

    function _channel() internal view returns (uint256 funds, uint256 redeemed, uint64 epoch, uint64 unlockAt) {
        return escrow.channel(payer, provider);
    }
}

contract EscrowTest is EscrowFixture {
    // ------------------------------------------------------------ deposit / withdraw

    function test_deposit_movesTokensAndCredits() public {
        vm.expectEmit(true, false, false, true);
        emit Escrow.Deposited(payer, 10e6, 10e6);
        _deposit(payer, 10e6);
        vm.assertEq(escrow.balanceOf(payer), 10e6);
        vm.assertEq(usdc.balanceOf(address(escrow)), 10e6);
        vm.assertEq(usdc.balanceOf(payer), 990e6);
    }

    function test_deposit_revertsOnZero() public {
        vm.prank(payer);
        vm.expectRevert(Escrow.ZeroAmount.selector);
        escrow.deposit(0);
    }

    function test_deposit_revertsWithoutAllowance() public {
        usdc.mint(other, 5e6);
        vm.prank(other);
        vm.expectRevert();
        escrow.deposit(5e6);
    }

    function test_withdraw_returnsFreeBalance() public {
        _deposit(payer, 10e6);
        vm.expectEmit(true, false, false, true);
        emit Escrow.Withdrawn(payer, 4e6, 6e6);
        vm.prank(payer);
        escrow.withdraw(4e6);
        vm.assertEq(escrow.balanceOf(payer), 6e6);
        vm.assertEq(usdc.balanceOf(payer), 994e6);
    }

    function test_withdraw_revertsOnZeroAndOverdraw() public {
        _deposit(payer, 10e6);
        vm.startPrank(payer);
        vm.expectRevert(Escrow.ZeroAmount.selector);
        escrow.withdraw(0);
        vm.expectRevert(abi.encodeWithSelector(Escrow.InsufficientBalance.selector, 10e6, 11e6));
        escrow.withdraw(11e6);
        vm.stopPrank();
    }

    // ------------------------------------------------------------ fund

    function test_fund_movesBalanceIntoChannel() public {
        _deposit(payer, 10e6);
        vm.expectEmit(true, true, false, true);
        emit Escrow.Funded(payer, provider, 0, 7e6, 7e6);
        vm.prank(payer);
        escrow.fund(provider, 7e6);
        (uint256 funds, uint256 redeemed, uint64 epoch, uint64 unlockAt) = _channel();
        vm.assertEq(funds, 7e6);
        vm.assertEq(redeemed, 0);
        vm.assertEq(uint256(epoch), 0);
        vm.assertEq(uint256(unlockAt), 0);
        vm.assertEq(escrow.balanceOf(payer), 3e6);
        vm.assertEq(uint256(escrow.serviceSince(payer, provider)), block.timestamp);
    }

    function test_fund_reverts() public {
        _deposit(payer, 10e6);
        vm.startPrank(payer);
        vm.expectRevert(Escrow.ZeroAmount.selector);
        escrow.fund(provider, 0);
        vm.expectRevert(Escrow.InvalidProvider.selector);
        escrow.fund(address(0), 1);
        vm.expectRevert(Escrow.InvalidProvider.selector);
        escrow.fund(payer, 1);
        vm.expectRevert(abi.encodeWithSelector(Escrow.InsufficientBalance.selector, 10e6, 10e6 + 1));
        escrow.fund(provider, 10e6 + 1);
        vm.stopPrank();
    }

    function test_fund_cancelsPendingUnlock() public {
        _fund(5e6);
        vm.prank(payer);
        escrow.requestUnlock(provider);
        _deposit(payer, 1e6);
        vm.expectEmit(true, true, false, true);
        emit Escrow.UnlockCancelled(payer, provider, 0);
        vm.prank(payer);
        escrow.fund(provider, 1e6);
        (uint256 funds,,, uint64 unlockAt) = _channel();
        vm.assertEq(funds, 6e6);
        vm.assertEq(uint256(unlockAt), 0);
        vm.prank(payer);
        vm.expectRevert(Escrow.UnlockNotRequested.selector);
        escrow.reclaim(provider);
    }

    // ------------------------------------------------------------ unlock / reclaim

    function test_requestUnlock_setsUnlockAt() public {
        _fund(5e6);
        vm.expectEmit(true, true, false, true);
        emit Escrow.UnlockRequested(payer, provider, 0, uint64(block.timestamp) + DELAY);
        vm.prank(payer);
        escrow.requestUnlock(provider);
        (,,, uint64 unlockAt) = _channel();
        vm.assertEq(uint256(unlockAt), block.timestamp + DELAY);
        vm.assertEq(uint256(escrow.serviceSince(payer, provider)), 0);
    }

    function test_requestUnlock_reverts() public {
        vm.prank(payer);
        vm.expectRevert(Escrow.EmptyChannel.selector);
        escrow.requestUnlock(provider);
        _fund(5e6);
        vm.startPrank(payer);
        escrow.requestUnlock(provider);
        vm.expectRevert(abi.encodeWithSelector(Escrow.UnlockAlreadyRequested.selector, uint64(block.timestamp) + DELAY));
        escrow.requestUnlock(provider);
        vm.stopPrank();
    }

    function test_reclaim_returnsRestAndBumpsEpoch() public {
        _fund(5e6);
        Escrow.Voucher memory v = _voucher(payer, provider, 0, 2e6);
        bytes memory sig = _sign(PAYER_KEY, v);
        vm.prank(provider);
        escrow.redeem(v, sig, ALL);
        vm.prank(payer);
        escrow.requestUnlock(provider);
        vm.warp(block.timestamp + DELAY);
        vm.expectEmit(true, true, false, true);
        emit Escrow.Reclaimed(payer, provider, 1, 3e6);
        vm.prank(payer);
        escrow.reclaim(provider);
        (uint256 funds, uint256 redeemed, uint64 epoch, uint64 unlockAt) = _channel();
        vm.assertEq(funds, 0);
        vm.assertEq(redeemed, 0);
        vm.assertEq(uint256(epoch), 1);
        vm.assertEq(uint256(unlockAt), 0);
        vm.assertEq(escrow.balanceOf(payer), 3e6);
        // The old epoch's voucher is now worthless, even after refunding.
        _fund(5e6);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(Escrow.WrongEpoch.selector, 0, 1));
        escrow.redeem(v, sig, ALL);
    }

    function test_reclaim_reverts() public {
        vm.prank(payer);
        vm.expectRevert(Escrow.UnlockNotRequested.selector);
        escrow.reclaim(provider);
        _fund(5e6);
        vm.prank(payer);
        escrow.requestUnlock(provider);
        vm.warp(block.timestamp + DELAY - 1);
        vm.prank(payer);
        vm.expectRevert(abi.encodeWithSelector(Escrow.UnlockPending.selector, uint64(block.timestamp) + 1));
        escrow.reclaim(provider);
    }

    // ------------------------------------------------------------ redeem

    function test_redeem_paysDifferenceAndIsCumulative() public {
        _fund(10e6);
        Escrow.Voucher memory v1 = _voucher(payer, provider, 0, 3e6);
        vm.expectEmit(true, true, false, true);
        emit Escrow.Redeemed(payer, provider, 0, 3e6, 3e6);
        vm.prank(provider);
        vm.assertEq(escrow.redeem(v1, _sign(PAYER_KEY, v1), ALL), 3e6);
        vm.assertEq(escrow.balanceOf(provider), 3e6);

        Escrow.Voucher memory v2 = _voucher(payer, provider, 0, 5e6);
        bytes memory sig2 = _sign(PAYER_KEY, v2);
        vm.prank(provider);
        vm.assertEq(escrow.redeem(v2, sig2, ALL), 2e6);
        vm.assertEq(escrow.balanceOf(provider), 5e6);

        // Replaying the same or an older voucher pays nothing.
        vm.prank(provider);
        vm.assertEq(escrow.redeem(v2, sig2, ALL), 0);
        vm.prank(provider);
        vm.assertEq(escrow.redeem(v1, _sign(PAYER_KEY, v1), ALL), 0);
        (uint256 funds, uint256 redeemed,,) = _channel();
        vm.assertEq(funds, 10e6);
        vm.assertEq(redeemed, 5e6);
        // No token moved: the provider's share sits in its free balance until it withdraws.
        vm.assertEq(usdc.balanceOf(address(escrow)), 10e6);
        vm.assertEq(usdc.balanceOf(provider), 0);
        vm.prank(provider);
        escrow.withdraw(5e6);
        vm.assertEq(usdc.balanceOf(provider), 5e6);
        vm.assertEq(usdc.balanceOf(address(escrow)), 5e6);
    }

    function test_redeem_cappedByFunds() public {
        _fund(4e6);
        Escrow.Voucher memory v = _voucher(payer, provider, 0, 9e6);
        bytes memory sig = _sign(PAYER_KEY, v);
        vm.prank(provider);
        vm.assertEq(escrow.redeem(v, sig, ALL), 4e6);
        // More funding lets the same voucher take the rest of what it allows.
        _fund(10e6);
        vm.prank(provider);
        vm.assertEq(escrow.redeem(v, sig, ALL), 5e6);
        (uint256 funds, uint256 redeemed,,) = _channel();
        vm.assertEq(funds, 14e6);
        vm.assertEq(redeemed, 9e6);
    }

    function test_redeem_duringUnlockStillWorks() public {
        _fund(4e6);
        vm.prank(payer);
        escrow.requestUnlock(provider);
        vm.warp(block.timestamp + DELAY - 1);
        Escrow.Voucher memory v = _voucher(payer, provider, 0, 1e6);
        vm.prank(provider);
        vm.assertEq(escrow.redeem(v, _sign(PAYER_KEY, v), ALL), 1e6);
        vm.warp(block.timestamp + 1);
        vm.prank(payer);
        escrow.reclaim(provider);
        vm.assertEq(escrow.balanceOf(payer), 3e6);
        vm.assertEq(registry.reputationOf(provider), 0, "no reputation while unlocking");
    }

    function test_redeem_revertsForOtherProviderCaller() public {
        _fund(4e6);
        Escrow.Voucher memory v = _voucher(payer, provider, 0, 1e6);
        bytes memory sig = _sign(PAYER_KEY, v);
        vm.prank(other);
        vm.expectRevert(abi.encodeWithSelector(Escrow.NotProvider.selector, other, provider));
        escrow.redeem(v, sig, ALL);
    }

    function test_redeem_revertsForVoucherNamingAnotherProvider() public {
        _fund(4e6);
        // Signed for `other`, presented by `provider` with the provider field swapped.
        Escrow.Voucher memory v = _voucher(payer, other, 0, 1e6);
        bytes memory sig = _sign(PAYER_KEY, v);
        v.provider = provider;
        vm.prank(provider);
        vm.expectRevert(Escrow.BadSignature.selector);
        escrow.redeem(v, sig, ALL);
    }

    function test_redeem_revertsOnWrongEpoch() public {
        _fund(4e6);
        Escrow.Voucher memory v = _voucher(payer, provider, 1, 1e6);
        bytes memory sig = _sign(PAYER_KEY, v);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(Escrow.WrongEpoch.selector, 1, 0));
        escrow.redeem(v, sig, ALL);
    }

    function test_redeem_revertsOnBadSignatures() public {
        _fund(4e6);
        Escrow.Voucher memory v = _voucher(payer, provider, 0, 1e6);
        vm.startPrank(provider);
        // Signed by someone else.
        bytes memory sig = _sign(OTHER_KEY, v);
        vm.expectRevert(Escrow.BadSignature.selector);
        escrow.redeem(v, sig, ALL);
        // Amount tampered with after signing.
        sig = _sign(PAYER_KEY, v);
        v.amount = 2e6;
        vm.expectRevert(Escrow.BadSignature.selector);
        escrow.redeem(v, sig, ALL);
        // Malformed.
        vm.expectRevert(Escrow.BadSignature.selector);
        escrow.redeem(v, hex"1234", ALL);
        vm.stopPrank();
    }

    function test_redeem_revertsForAnotherChainOrEscrow() public {
        _fund(4e6);
        Escrow.Voucher memory v = _voucher(payer, provider, 0, 1e6);
        // Same voucher, digest of a twin escrow at another address.
        Escrow twin = new Escrow(IERC20(address(usdc)), DELAY, IReputation(address(0)));
        (uint8 sv, bytes32 r, bytes32 s) = vm.sign(PAYER_KEY, twin.voucherDigest(v));
        vm.prank(provider);
        vm.expectRevert(Escrow.BadSignature.selector);
        escrow.redeem(v, abi.encodePacked(r, s, sv), ALL);
        // Signed for another chain id.
        (sv, r, s) = vm.sign(PAYER_KEY, _digest(address(escrow), block.chainid + 1, v));
        bytes memory foreign = abi.encodePacked(r, s, sv);
        vm.prank(provider);
        vm.expectRevert(Escrow.BadSignature.selector);
        escrow.redeem(v, foreign, ALL);
    }

    function test_voucherDigest_matchesEip712() public view {
        Escrow.Voucher memory v = _voucher(payer, provider, 3, 123);
        vm.assertEq(escrow.voucherDigest(v), _digest(address(escrow), block.chainid, v));
        vm.assertEq(
            escrow.DOMAIN_SEPARATOR(),
            keccak256(
                abi.encode(
                    keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                    keccak256("Khachapuri Escrow"),
                    keccak256("1"),
                    block.chainid,
                    address(escrow)
                )
            )
        );
    }

    // ------------------------------------------------------------ redeemBatch

    function test_redeemBatch_paysAll() public {
        _fund(10e6);
        address payer2 = vm.addr(0xD00D);
        usdc.mint(payer2, 10e6);
        vm.startPrank(payer2);
        usdc.approve(address(escrow), type(uint256).max);
        escrow.deposit(10e6);
        escrow.fund(provider, 10e6);
        vm.stopPrank();

        Escrow.Voucher[] memory vs = new Escrow.Voucher[](3);
        bytes[] memory sigs = new bytes[](3);
        vs[0] = _voucher(payer, provider, 0, 2e6);
        vs[1] = _voucher(payer2, provider, 0, 20e6); // capped at 10
        vs[2] = _voucher(payer, provider, 0, 3e6); // same payer again: +1
        sigs[0] = _sign(PAYER_KEY, vs[0]);
        sigs[1] = _sign(0xD00D, vs[1]);
        sigs[2] = _sign(PAYER_KEY, vs[2]);
        vm.prank(provider);
        vm.assertEq(escrow.redeemBatch(vs, sigs, _all(3)), 13e6);
        vm.assertEq(escrow.balanceOf(provider), 13e6);
    }

    function test_redeemBatch_reverts() public {
        _fund(10e6);
        Escrow.Voucher[] memory vs = new Escrow.Voucher[](2);
        bytes[] memory sigs = new bytes[](1);
        vm.prank(provider);
        vm.expectRevert(Escrow.LengthMismatch.selector);
        escrow.redeemBatch(vs, sigs, _all(2));

        sigs = new bytes[](2);
        vm.prank(provider);
        vm.expectRevert(Escrow.LengthMismatch.selector);
        escrow.redeemBatch(vs, sigs, _all(1));
        vs[0] = _voucher(payer, provider, 0, 2e6);
        vs[1] = _voucher(payer, other, 0, 2e6);
        sigs[0] = _sign(PAYER_KEY, vs[0]);
        sigs[1] = _sign(PAYER_KEY, vs[1]);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(Escrow.NotProvider.selector, provider, other));
        escrow.redeemBatch(vs, sigs, _all(2));
        vm.assertEq(escrow.balanceOf(provider), 0);
    }

    function test_redeemBatch_empty() public {
        vm.prank(provider);
        vm.assertEq(escrow.redeemBatch(new Escrow.Voucher[](0), new bytes[](0), new uint256[](0)), 0);
    }

    // ------------------------------------------------------------ reputation

    function test_reputation_creditedAfterMinimumPeriod() public {
        _fund(10e6);
        Escrow.Voucher memory v = _voucher(payer, provider, 0, 1e6);
        vm.prank(provider);
        escrow.redeem(v, _sign(PAYER_KEY, v), ALL);
        vm.assertEq(registry.reputationOf(provider), 0, "too early");

        vm.warp(block.timestamp + MIN_PERIOD);
        v = _voucher(payer, provider, 0, 2e6);
        vm.expectEmit(true, true, false, true);
        emit Registry.ReputationIncreased(provider, payer, MIN_PERIOD, 2e6, 1);
        vm.prank(provider);
        escrow.redeem(v, _sign(PAYER_KEY, v), ALL);
        vm.assertEq(registry.reputationOf(provider), 1);
        vm.assertEq(uint256(escrow.serviceSince(payer, provider)), block.timestamp, "period restarts");

        // Right after a credit, another redeem earns nothing.
        v = _voucher(payer, provider, 0, 3e6);
        vm.prank(provider);
        escrow.redeem(v, _sign(PAYER_KEY, v), ALL);
        vm.assertEq(registry.reputationOf(provider), 1);
    }

    function test_reputation_drainedChannelEndsPeriod() public {
        _fund(1e6);
        vm.warp(block.timestamp + MIN_PERIOD);
        Escrow.Voucher memory v = _voucher(payer, provider, 0, 1e6);
        vm.prank(provider);
        escrow.redeem(v, _sign(PAYER_KEY, v), ALL);
        vm.assertEq(registry.reputationOf(provider), 1);
        vm.assertEq(uint256(escrow.serviceSince(payer, provider)), 0);
    }

    function test_reputation_noRegistryStillRedeems() public {
        Escrow bare = new Escrow(IERC20(address(usdc)), DELAY, IReputation(address(0)));
        vm.startPrank(payer);
        usdc.approve(address(bare), type(uint256).max);
        bare.deposit(5e6);
        bare.fund(provider, 5e6);
        vm.stopPrank();
        vm.warp(block.timestamp + MIN_PERIOD);
        Escrow.Voucher memory v = _voucher(payer, provider, 0, 1e6);
        (uint8 sv, bytes32 r, bytes32 s) = vm.sign(PAYER_KEY, bare.voucherDigest(v));
        vm.prank(provider);
        vm.assertEq(bare.redeem(v, abi.encodePacked(r, s, sv), ALL), 1e6);
    }

    // ------------------------------------------------------------ views / misc

    function test_views() public view {
        vm.assertEq(address(escrow.token()), address(usdc));
        vm.assertEq(uint256(escrow.unlockDelay()), DELAY);
        vm.assertEq(address(escrow.registry()), address(registry));
        vm.assertEq(uint256(usdc.decimals()), 6);
    }

    // ------------------------------------------------------------ fuzz

    function testFuzz_redeemNeverExceedsFundsOrVoucher(uint96 funded, uint96 a1, uint96 a2) public {
        uint256 f = bound(funded, 1, 1_000e6);
        _fund(f);
        Escrow.Voucher memory v1 = _voucher(payer, provider, 0, a1);
        Escrow.Voucher memory v2 = _voucher(payer, provider, 0, a2);
        vm.startPrank(provider);
        uint256 p1 = escrow.redeem(v1, _sign(PAYER_KEY, v1), ALL);
        uint256 p2 = escrow.redeem(v2, _sign(PAYER_KEY, v2), ALL);
        vm.stopPrank();
        uint256 best = a1 > a2 ? a1 : a2;
        uint256 expected = best < f ? best : f;
        vm.assertEq(p1 + p2, expected);
        vm.assertEq(escrow.balanceOf(provider), expected);
        (, uint256 redeemed,,) = _channel();
        vm.assertEq(redeemed, expected);
        vm.assertEq(usdc.balanceOf(address(escrow)), f, "a redeem credits, it does not transfer");
    }

    function testFuzz_depositWithdrawRoundTrip(uint96 d, uint96 w) public {
        uint256 dep = bound(d, 1, 1_000e6);
        uint256 wd = bound(w, 1, dep);
        _deposit(payer, dep);
        vm.prank(payer);
        escrow.withdraw(wd);
        vm.assertEq(escrow.balanceOf(payer), dep - wd);
        vm.assertEq(usdc.balanceOf(payer), 1_000e6 - dep + wd);
    }

    function testFuzz_reclaimReturnsUnredeemed(uint96 funded, uint96 amount) public {
        uint256 f = bound(funded, 1, 1_000e6);
        _fund(f);
        Escrow.Voucher memory v = _voucher(payer, provider, 0, amount);
        vm.prank(provider);
        uint256 paid = escrow.redeem(v, _sign(PAYER_KEY, v), ALL);
        if (paid == f) return; // nothing left to unlock
        vm.prank(payer);
        escrow.requestUnlock(provider);
        vm.warp(block.timestamp + DELAY);
        vm.prank(payer);
        escrow.reclaim(provider);
        vm.assertEq(escrow.balanceOf(payer), f - paid);
        vm.assertEq(escrow.balanceOf(provider), paid);
        vm.assertEq(usdc.balanceOf(address(escrow)), f);
    }

    // ------------------------------------------------------------ reentrancy

    function test_reentrancy_tokenCallbackCannotReenter() public {
        ReentrantToken evil = new ReentrantToken();
        Escrow e = new Escrow(IERC20(address(evil)), DELAY, IReputation(address(0)));
        evil.setTarget(e);
        evil.mint(address(this), 10);
        evil.approve(address(e), 10);
        e.deposit(10);
        vm.expectRevert(ReentrancyGuard.ReentrancyGuardReentrantCall.selector);
        e.withdraw(5);
    }
}
