// The real-program harness's C++ program: what its three files share.
// Global objects with printing constructors and destructors, a class
// hierarchy whose vtables live in shapes.cpp, and templates that every file
// instantiates (so each object carries its own COMDAT copy).
#ifndef REAL_SHAPES_HPP
#define REAL_SHAPES_HPP

#include <cstdio>
#include <map>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

// Announces its construction and destruction: the destructor lines must
// appear after main returns, in reverse order of construction.
class Tracer {
public:
    explicit Tracer(const char *name) : name_(name) { std::printf("construct %s\n", name_); }
    ~Tracer() { std::printf("destroy %s\n", name_); }
    Tracer(const Tracer &) = delete;
    Tracer &operator=(const Tracer &) = delete;

private:
    const char *name_;
};

class Shape {
public:
    virtual ~Shape();
    virtual double area() const = 0;
    virtual std::string name() const = 0;
    std::string describe() const;
};

std::vector<std::unique_ptr<Shape>> make_shapes(int count);

// Thrown by registry.cpp, caught in main.cpp.
class RegistryError : public std::runtime_error {
public:
    RegistryError(const std::string &what, int code) : std::runtime_error(what), code_(code) {}
    int code() const { return code_; }

private:
    int code_;
};

// Inline templates: instantiated in more than one file on purpose.
template <typename T> T total(const std::vector<T> &values)
{
    return std::accumulate(values.begin(), values.end(), T{});
}

template <typename Key, typename Value> class Tally {
public:
    void add(const Key &key, Value amount) { counts_[key] += amount; }
    Value get(const Key &key) const
    {
        auto found = counts_.find(key);
        return found == counts_.end() ? Value{} : found->second;
    }
    std::string summary() const
    {
        std::string text;
        for (const auto &[key, value] : counts_)
            text += key + "=" + std::to_string(value) + " ";
        return text;
    }
    static int instances;

private:
    std::map<Key, Value> counts_;
};

template <typename Key, typename Value> int Tally<Key, Value>::instances = 0;

void register_shapes(const std::vector<std::unique_ptr<Shape>> &shapes,
                     Tally<std::string, int> &by_name);
double checked_area(const Shape &shape, double limit);
int registry_calls();

#endif
