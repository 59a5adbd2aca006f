// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {EscrowFixture} from "./Escrow.t.sol";
import {Escrow} from "../src/Escrow.sol";

/// Realistic settlement shapes for `forge test --gas-report`: one redeem, and a batch of 100
/// vouchers from 100 different payers (each channel's first redeem: cold storage).
contract GasTest is EscrowFixture {
    function test_gas_redeemOne() public {
        _fund(10e6);
        Escrow.Voucher memory v = _voucher(payer, provider, 0, 1e6);
        bytes memory sig = _sign(PAYER_KEY, v);
        vm.prank(provider);
        escrow.redeem(v, sig, ALL);
        vm.assertEq(escrow.balanceOf(provider), 1e6);
    }

    function test_gas_redeemBatch100() public {
        uint256 n = 100;
        Escrow.Voucher[] memory vs = new Escrow.Voucher[](n);
        bytes[] memory sigs = new bytes[](n);
        for (uint256 i = 0; i < n; ++i) {
            uint256 key = 0x1000 + i;
            address p = vm.addr(key);
            usdc.mint(p, 1e6);
            vm.startPrank(p);
            usdc.approve(address(escrow), 1e6);
            escrow.deposit(1e6);
            escrow.fund(provider, 1e6);
            vm.stopPrank();
            vs[i] = _voucher(p, provider, 0, 5e5);
            sigs[i] = _sign(key, vs[i]);
        }
        vm.prank(provider);
        vm.assertEq(escrow.redeemBatch(vs, sigs, _all(n)), n * 5e5);
        vm.assertEq(escrow.balanceOf(provider), n * 5e5);
    }
}
