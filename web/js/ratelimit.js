// A token bucket matching the server's limit on `send`: a burst of 10, then
// 5 a second sustained.  The client checks it before sending so that a fast
// typist sees a friendly "slow down" instead of a server error.

export class TokenBucket {
  constructor({ capacity = 10, perSecond = 5, now = () => performance.now() } = {}) {
    this.capacity = capacity;
    this.rate = perSecond / 1000;   // tokens per millisecond
    this.now = now;
    this.tokens = capacity;
    this.stamp = now();
  }

  refill() {
    const t = this.now();
    this.tokens = Math.min(this.capacity, this.tokens + (t - this.stamp) * this.rate);
    this.stamp = t;
  }

  // Takes one token if there is one.
  take() {
    this.refill();
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return true;
    }
    return false;
  }

  // Gives back a token taken for a send the server did not accept.
  giveBack() {
    this.refill();
    this.tokens = Math.min(this.capacity, this.tokens + 1);
  }

  // Milliseconds until one token is available.
  wait() {
    this.refill();
    return this.tokens >= 1 ? 0 : Math.ceil((1 - this.tokens) / this.rate);
  }
}
