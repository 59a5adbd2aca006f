// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title MockUSDC
/// @notice A 6-decimal stand-in for USDC on local and test networks. Anyone can mint:
///         never deploy it where its tokens could be mistaken for money.
contract MockUSDC is ERC20 {
    constructor() ERC20("Mock USD Coin", "USDC") {}

    /// @notice USDC has 6 decimals; amounts everywhere in Khachapuri use that base unit.
    function decimals() public pure override returns (uint8) {
        return 6;
    }

    /// @notice Mints `amount` base units to `to` (dev networks only).
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }
}
