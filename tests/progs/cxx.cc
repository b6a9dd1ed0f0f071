// cxx: C++ under checkpoint and restart.  Three std::threads throw and
// catch exceptions in a loop and fill containers under a std::mutex; the
// main thread prints ticks with iostream and checks what they built.
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

std::mutex mu;
std::map<std::string, long> seen;  // guarded by mu
std::atomic<long> caught{0};
std::atomic<bool> bad{false};

void work(int id) {
  std::vector<int> v;
  for (long i = 0;; i++) {
    try {
      if (i % 3 == 0) throw std::runtime_error("tick " + std::to_string(i));
      v.push_back(static_cast<int>(i));
      if (v.size() > 1000) v.clear();
    } catch (const std::runtime_error& e) {
      if (std::string(e.what()).rfind("tick ", 0) != 0) bad = true;
      caught++;
    }
    {
      std::lock_guard<std::mutex> lock(mu);
      seen["worker" + std::to_string(id)] = i;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

bool check(long tick, long* last_caught) {
  std::lock_guard<std::mutex> lock(mu);
  if ((tick > 2 && seen.size() != 3) || bad) {
    std::cout << "containers or exceptions went wrong" << std::endl;
    return false;
  }
  // Over 5 ticks: a tick right after a restore may come first.
  if (tick % 5 == 0) {
    if (tick > 5 && caught == *last_caught) {
      std::cout << "no exception was caught in 5 ticks" << std::endl;
      return false;
    }
    *last_caught = caught;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  long ms = argc > 1 ? std::atol(argv[1]) : 200;
  for (int i = 0; i < 3; i++) std::thread(work, i).detach();
  long last_caught = -1;
  for (long tick = 1;; tick++) {
    if (!check(tick, &last_caught)) {
      std::cout << "FAIL at tick " << tick << std::endl;
      return 1;
    }
    std::cout << tick << std::endl;
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  }
}
