module github.com/agentidp/agentidp/libs/testkit

go 1.26
