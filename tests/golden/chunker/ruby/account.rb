# frozen_string_literal: true

require "bigdecimal"

module Billing
  # Raised when a withdrawal would overdraw the account.
  class InsufficientFunds < StandardError; end

  # A customer account with a balance and a history of transactions.
  class Account
    attr_reader :owner, :balance

    MINIMUM_BALANCE = BigDecimal("0")

    def initialize(owner, balance = BigDecimal("0"))
      @owner = owner
      @balance = balance
      @history = []
    end

    # Add money to the account and record the transaction.
    def deposit(amount)
      raise ArgumentError, "amount must be positive" unless amount.positive?

      @balance += amount
      @history << [:deposit, amount, Time.now]
      self
    end

    def withdraw(amount)
      if @balance - amount < MINIMUM_BALANCE
        raise InsufficientFunds, "#{owner} has #{balance}, cannot withdraw #{amount}"
      end

      @balance -= amount
      @history << [:withdraw, amount, Time.now]
      self
    end

    def self.open(owner)
      new(owner).tap { |account| puts "opened an account for #{account.owner}" }
    end

    def statement
      @history.map do |kind, amount, time|
        format("%<time>s %<kind>-10s %<amount>12.2f", time: time.strftime("%F"), kind: kind, amount: amount)
      end.join("\n")
    end
  end

  def self.transfer(from, to, amount)
    from.withdraw(amount)
    to.deposit(amount)
  end
end
