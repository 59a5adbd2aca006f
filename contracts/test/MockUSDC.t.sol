// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Test} from "./utils/Test.sol";
import {MockUSDC} from "../src/MockUSDC.sol";

contract MockUSDCTest is Test {
    MockUSDC internal usdc;

    function setUp() public {
        usdc = new MockUSDC();
    }

    function test_metadata() public view {
        vm.assertEq(uint256(usdc.decimals()), 6);
        vm.assertEq(usdc.symbol(), "USDC");
    }

    function testFuzz_mintAnyoneToAnyone(address to, uint96 amount) public {
        vm.assume(to != address(0));
        vm.prank(address(0xBEEF));
        usdc.mint(to, amount);
        vm.assertEq(usdc.balanceOf(to), amount);
        vm.assertEq(usdc.totalSupply(), amount);
    }

    function test_mintToZeroReverts() public {
        vm.expectRevert();
        usdc.mint(address(0), 1);
    }
}
