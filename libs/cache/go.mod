module github.com/agentidp/agentidp/libs/cache

go 1.26
